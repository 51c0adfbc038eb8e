"""A bounded soak of ``ppdpp serve-llm`` and ``ppdpp serve``: a fixed-rate mix of valid and invalid requests.

    python benchmarks/soak.py --minutes 10 --rate 2

Starts ``ppdpp serve-llm --model local/smollm2`` and ``ppdpp serve`` (in front of it, with ``--planner``, else
the newest ``runs/**/final`` planner, else a fresh untrained one) as subprocesses on free ports of 127.0.0.1,
then for ``--minutes`` sends ``--rate`` requests a second (open loop: a request is sent on schedule whether or
not earlier ones have been answered, at most ``--max-in-flight`` at once) drawn, seeded, from a mix of valid
chat requests (plain and streamed, to both servers) and invalid ones (bad JSON, no messages, ``n=0``, a bad
role, an oversized body, an unknown path). Both servers' RSS is sampled every ``--sample-s`` seconds. Prints
one row per server: requests sent, served as expected (valid: 2xx, invalid: 4xx), responses by status class,
transport errors, p50/p99 latency of valid and of invalid requests, and RSS at start, peak and end; with
``--json PATH`` also the RSS series and every count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "I want to buy a used bike, but the price seems high. What should I say?"}]


@dataclass(frozen=True)
class Probe:
    """One kind of request: to which server, what, and whether a 2xx (valid) or a 4xx (invalid) is right."""

    name: str
    server: str
    path: str
    body: bytes
    valid: bool
    weight: int


def probes(max_tokens: int) -> list[Probe]:
    """The mix, per server: 6 valid chat requests (4 plain, 2 streamed) to 5 invalid ones (bad JSON, no
    messages, ``n=0``, a bad role, and an oversized body for serve-llm or an unknown path for the proxy)."""
    def body(**fields: object) -> bytes:
        return json.dumps({"model": "m", **fields}).encode()

    ok = body(messages=CHAT, max_tokens=max_tokens, temperature=0)
    chat = "/v1/chat/completions"
    mix = []
    for server in ("serve-llm", "proxy"):
        mix += [Probe("chat", server, chat, ok, True, 4),
                Probe("chat (stream)", server, chat, body(messages=CHAT, max_tokens=max_tokens, stream=True), True, 2),
                Probe("bad json", server, chat, b"{not json", False, 1),
                Probe("no messages", server, chat, body(), False, 1),
                Probe("n=0", server, chat, body(messages=CHAT, n=0), False, 1),
                Probe("bad role", server, chat, body(messages=[{"role": "wizard", "content": "hi"}]), False, 1)]
    mix += [Probe("oversized body", "serve-llm", chat,
                  body(messages=[{"role": "user", "content": "x" * (1024 * 1024 + 16)}]), False, 1),
            Probe("unknown path", "proxy", "/v1/nowhere", ok, False, 1)]
    return mix


@dataclass
class Tally:
    """What one server's requests came to."""

    sent: int = 0
    expected: int = 0
    classes: Counter = field(default_factory=Counter)
    latency_ms: dict[bool, list[float]] = field(default_factory=lambda: defaultdict(list))
    rss_mb: list[tuple[float, float]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(args: list[str], log: Path, ready: str, env: dict[str, str]) -> subprocess.Popen:
    """``ppdpp <args>`` in a subprocess, its output in ``log``; returns once ``ready`` appears there."""
    with open(log, "w") as sink:
        process = subprocess.Popen([sys.executable, "-c", "from ppdpp.planner.cli import main; main()", *args],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 600
    while ready not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if ready not in log.read_text():
        process.kill()
        raise SystemExit(f"ppdpp {args[0]} did not start:\n{log.read_text()[-3000:]}")
    return process


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def planner_dir(given: Path | None, tmp: Path) -> Path:
    """``--planner``, else the newest saved ``runs/**/final`` planner, else a fresh one (untrained head)."""
    if given is not None:
        return given
    saved = sorted(REPO.glob("runs/**/final/planner.json"), key=lambda p: p.stat().st_mtime)
    if saved:
        return saved[-1].parent
    from ppdpp.planner.policy.policy_planner import PlannerConfig, PolicyPlanner
    from ppdpp.planner.registry.manager import get_domain

    return PolicyPlanner(get_domain("negotiation"), PlannerConfig(max_length=96)).save_pretrained(tmp / "planner")


async def one(session: aiohttp.ClientSession, url: str, probe: Probe, tally: Tally, timeout: float) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url + probe.path, data=probe.body, timeout=aiohttp.ClientTimeout(total=timeout),
                                headers={"Content-Type": "application/json"}) as response:
            await response.read()
            status = response.status
    except asyncio.TimeoutError:
        tally.classes["timeout"] += 1
        return
    except aiohttp.ClientError as exc:
        tally.classes[f"transport ({type(exc).__name__})"] += 1
        return
    tally.classes[f"{status // 100}xx"] += 1
    tally.latency_ms[probe.valid].append((time.perf_counter() - started) * 1000)
    tally.expected += (200 <= status < 300) if probe.valid else (400 <= status < 500)


async def soak(urls: dict[str, str], pids: dict[str, int], args: argparse.Namespace) -> dict[str, Tally]:
    mix = probes(args.max_tokens)
    rng = random.Random(args.seed)
    tallies = {name: Tally() for name in urls}
    stop_at = time.monotonic() + args.minutes * 60
    skipped = 0

    async def sample() -> None:
        begin = time.monotonic()
        while True:
            for name, pid in pids.items():
                tallies[name].rss_mb.append((time.monotonic() - begin, rss_mb(pid)))
            await asyncio.sleep(args.sample_s)

    sampler = asyncio.create_task(sample())
    in_flight: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.max_in_flight)) as session:
        due = time.monotonic()
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += 1 / args.rate
            probe = rng.choices(mix, weights=[p.weight for p in mix])[0]
            if len(in_flight) >= args.max_in_flight:
                skipped += 1
                continue
            tallies[probe.server].sent += 1
            task = asyncio.create_task(one(session, urls[probe.server], probe, tallies[probe.server], args.timeout))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    sampler.cancel()
    for name, pid in pids.items():
        tallies[name].rss_mb.append((args.minutes * 60, rss_mb(pid)))
    if skipped:
        print(f"{skipped} requests not sent: {args.max_in_flight} already in flight")
    return tallies


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[q - 1]:.0f}"


def table(tallies: dict[str, Tally], title: str) -> Table:
    out = Table(title=title)
    for column in ("server", "sent", "as expected", "by class", "valid p50/p99 ms", "invalid p50/p99 ms",
                   "RSS MiB start/peak/end"):
        out.add_column(column, justify="left" if column in ("server", "by class") else "right")
    for name, t in tallies.items():
        rss = [mb for _, mb in t.rss_mb]
        out.add_row(name, str(t.sent), str(t.expected), ", ".join(f"{k} {v}" for k, v in sorted(t.classes.items())),
                    f"{pct(t.latency_ms[True], 50)} / {pct(t.latency_ms[True], 99)}",
                    f"{pct(t.latency_ms[False], 50)} / {pct(t.latency_ms[False], 99)}",
                    f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f}" if rss else "-")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2.0, help="Requests per second, both servers together.")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens of the valid chat requests.")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120.0, help="Client timeout per request, seconds.")
    parser.add_argument("--sample-s", type=float, default=5.0, help="Seconds between RSS samples.")
    parser.add_argument("--planner", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="Also write the counts and RSS series here.")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "SOAK_UPSTREAM_KEY": "unused"}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            llm_port, proxy_port = free_port(), free_port()
            processes.append(start(["serve-llm", "--model", "local/smollm2", "--port", str(llm_port)],
                                   Path(tmp) / "serve-llm.log", "serving", env))
            llm_url = f"http://127.0.0.1:{llm_port}"
            planner = planner_dir(args.planner, Path(tmp))
            processes.append(start(["serve", "--planner", str(planner), "--upstream", "openai/smollm2",
                                    "--api-base", f"{llm_url}/v1", "--upstream-key-env", "SOAK_UPSTREAM_KEY",
                                    "--port", str(proxy_port), "--max-tokens", str(args.max_tokens),
                                    "--threads", "1"], Path(tmp) / "serve.log", "ppdpp serve:", env))
            urls = {"serve-llm": llm_url, "proxy": f"http://127.0.0.1:{proxy_port}"}
            pids = {"serve-llm": processes[0].pid, "proxy": processes[1].pid}
            print(f"soaking for {args.minutes:g} min at {args.rate:g} req/s; planner {planner}", flush=True)
            tallies = asyncio.run(soak(urls, pids, args))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    Console(width=160).print(table(tallies, f"soak: {args.minutes:g} min at {args.rate:g} req/s, "
                                            f"max_tokens {args.max_tokens}"))
    for name, t in tallies.items():
        series = " ".join(f"{mb:.0f}" for _, mb in t.rss_mb[::max(1, len(t.rss_mb) // 12)])
        print(f"{name} RSS MiB over time (every ~{args.minutes * 60 / 12:.0f} s): {series}")
    if args.json:
        args.json.write_text(json.dumps({name: {"sent": t.sent, "expected": t.expected, "classes": dict(t.classes),
                                                "rss_mb": t.rss_mb} for name, t in tallies.items()}, indent=1))


if __name__ == "__main__":
    main()
