"""Does a trained planner make a real LLM agent better? (issue #26) Qwen as the agent, exact outcomes.

The agent is a local instruct LLM (default Qwen2.5-Coder-1.5B), the user the domain's programmatic simulator
(negotiation: the rule-based seller; tutoring: the scripted student), the critic the oracle (the simulator's
exact outcome). Everything runs as resumable **pieces**; each writes its own folder under ``--out`` and is
skipped when finished, and every LLM answer goes through the disk response cache, so a killed piece restarts
where the cache stops. ``--piece all`` runs every piece in order (what is missing only); a comma list
(``--piece realisation,eval``) runs those pieces in one process, in the order below.

Pieces (``--piece``, with ``--domains`` and ``--cases``):

* ``realisation``: on the **valid** split, the agent writes one reply under every strategy at the opening of
  ``--realisation-cases`` cases, for each prompt variant (``--variants``: ``ppdpp`` = PPDPP's prompt word for
  word, ``fewshot`` = the default few-shot prompt, ``fewshot+price`` = with the price hint, negotiation only;
  ``fewshot+words`` = with the word hint, tutoring only);
  the reply is read back by the domain's reader (the seller's act classifier; the student's reading,
  :func:`ppdpp.plugins.tutoring.prompting.read_strategy`). Realisation = read as the strategy written under.
* ``sft``, ``rl-template``: the SFT planner and SFT+RL trained with the template agent
  (``benchmarks/grounded_eval.py``'s stages and settings, same folders).
* ``rl-branch``: SFT+RL trained with the template agent and all-strategy branching (``ppdpp rl
  --branch-strategies``: every strategy replayed at every decision), ``--rl-branch-episodes`` episodes, 32 per
  update (folder ``rl-branch``); only when named (not in ``--piece all``), and its planner is evaluated when
  ``--policies`` names ``sft+rl-branch``.
* ``rl-dbias``: branching RL of the head and a bias per decision only (``--head-only``) from an SFT planner that
  has one (``ppdpp sft --decision-bias`` with one row per turn, folder ``sft-dbias``), ``--rl-dbias-episodes``
  episodes, 32 per update (folder ``rl-dbias``); only when named, evaluated as ``sft+rl-dbias``.
* ``rl-llm``: SFT+RL trained with the LLM agent in the loop for ``--rl-llm-episodes`` episodes, on the train
  cases, with the prompt levers given (folder ``rl-llm``, or ``rl-llm+words`` with ``--word-hint``, ...).
* ``eval``: ``ppdpp evaluate`` of each policy (``--policies``) on the first ``--cases`` test cases, one folder per
  policy (``eval-<policy>``), the same seeds per case for every policy (paired).
* ``critic``: the LLM as a greedy critic on the final state of every evaluated dialogue: ``critic_agree`` and
  ``critic_false_success`` against the exact outcome.
* ``table``: markdown of whatever has finished (labelled with its n): metric with 95% interval, the paired
  difference of each SFT+RL against every policy (bootstrap interval, sign-flip p), strategy distribution and
  its entropy, realisation of each policy's own turns, critic agreement, wall time and tokens.

The negotiation price hint and the tutoring answer key and word hint are settings other than PPDPP's;
``--price-hint``, ``--answer-key`` and ``--word-hint`` play the evaluation with them (folders
``eval-<policy>+price``, ``eval-<policy>+key``, ``eval-<policy>+words``).
``--split valid`` plays the valid cases instead (folders ``...@valid``), for tuning a lever before the test run.

    nice -n 5 python benchmarks/llm_agent_eval.py --piece all --out runs/llm-agent --cases 100
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one torch thread per process: on a shared CPU two wait for each other
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grounded_eval import SETTINGS, ppdpp  # noqa: E402  (benchmarks/ is the script's folder)

from ppdpp.simulators.evaluate import estimate, paired_difference  # noqa: E402

POLICIES = ("no-planner", "random", "majority", "llm", "proactive", "procot", "sft", "sft+rl-template",
            "sft+rl-llm")
"""``llm``: the agent LLM picks the strategy with ppdpp's planning prompt; ``proactive`` and ``procot``: the PPDPP
paper's prompting baselines (Deng et al., 2023), also with the agent LLM as the planner. Played when named too, not
by default: ``sft+rl-branch`` and ``sft+rl-dbias`` (the ``rl-branch`` and ``rl-dbias`` pieces' planners) and
``fixed-plan``."""
VARIANTS = ("ppdpp", "fewshot", "fewshot+price", "fewshot+words")
VARIANT_DOMAIN = {"fewshot+price": "negotiation", "fewshot+words": "tutoring"}
"""The variants that only one domain has."""
RUN_SETTINGS = ("--concurrency", "16")  # and --max-tokens (48 unless told)
PIECES = ("realisation", "sft", "rl-template", "rl-branch", "rl-dbias", "rl-llm", "eval", "critic", "table")
NAMED_ONLY = ("rl-branch", "rl-dbias")
"""Pieces that ``--piece all`` leaves out: they run when named (``--piece rl-branch``)."""
TRAINED = ("sft+rl-llm", "sft+rl-branch", "sft+rl-dbias", "sft+rl-template", "fixed-plan")
"""The policies whose differences against every other the table prints (the trained planners; the ceiling plan)."""


def pieces(text: str) -> list[str]:
    """``--piece``: ``all``, one piece, or a comma list of pieces (run in :data:`PIECES` order)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*PIECES, "all")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown piece {', '.join(unknown) or repr(text)}; "
                                         f"choose all or from {', '.join(PIECES)}")
    return names


def safe(name: str) -> str:
    return name.replace("/", "_").replace("+", "-")


def prelude(price_hint: bool, few_shot: bool = True, answer_key: bool = False, word_hint: bool = False) -> str:
    """Python run before a ``ppdpp`` command in a child process: the domains' prompt levers."""
    return ("from ppdpp.plugins.negotiation import DOMAIN as N; from ppdpp.planner.registry.manager import "
            f"get_domain; N.few_shot = {few_shot}; N.price_hint = {price_hint}; T = get_domain('tutoring'); "
            f"T.few_shot = {few_shot}; T.answer_key = {answer_key}; T.word_hint = {word_hint}; ")


def run_ppdpp(args: list[str], log: list[str], *, price_hint: bool = False, answer_key: bool = False,
              word_hint: bool = False) -> float:
    """``grounded_eval.ppdpp`` with the prompt levers set in the child process."""
    import grounded_eval

    saved = grounded_eval.PPDPP
    grounded_eval.PPDPP = [sys.executable, "-c", prelude(price_hint, answer_key=answer_key, word_hint=word_hint)
                           + "from ppdpp.planner.cli import main; main()"]
    try:
        return ppdpp(args, log)
    finally:
        grounded_eval.PPDPP = saved


# ---- realisation ------------------------------------------------------------------------------------------
def reader(domain_name: str, data_dir: Path | None):
    """``(text, case) -> strategy`` as the domain's simulator reads an agent line."""
    if domain_name == "negotiation":
        from ppdpp.plugins.negotiation.acts import classifier_for

        classifier = classifier_for(data_dir)
        return lambda text, case: classifier.predict(text)
    from ppdpp.plugins.tutoring.prompting import read_strategy

    return lambda text, case: read_strategy(text, case.fields["target"])


def set_variant(domain: Any, variant: str) -> None:
    domain.few_shot = variant != "ppdpp"
    if hasattr(domain, "price_hint"):
        domain.price_hint = variant == "fewshot+price"
    if hasattr(domain, "word_hint"):
        domain.word_hint = variant == "fewshot+words"


async def realisation_rows(domain: Any, model: str, variant: str, cases: list, max_tokens: int,
                           data_dir: Path | None) -> list[dict]:
    """One reply per (case, strategy) at the case's opening, read back."""
    from ppdpp.planner.llm import open_chat

    set_variant(domain, variant)
    llm = open_chat(model, cache="all")
    read = reader(domain.name, data_dir)
    try:
        jobs = [(case, s, domain.agent_messages(case, domain.opening(case), s)) for case in cases
                for s in domain.strategies]
        done = await asyncio.gather(*(llm.complete(m, max_tokens=max_tokens, temperature=0.0) for _, _, m in jobs))
    finally:
        await llm.aclose()
        set_variant(domain, "fewshot")
    return [{"case": case.id, "strategy": s, "reply": c.texts[0], "read": read(c.texts[0], case),
             "prompt_tokens": c.usage.prompt_tokens, "completion_tokens": c.usage.completion_tokens}
            for (case, s, _), c in zip(jobs, done)]


def realisation_piece(args, domain_name: str) -> None:
    from ppdpp.planner.registry.manager import get_domain

    domain = get_domain(domain_name)
    cases = domain.load_cases("valid", args.data_dir)[: args.realisation_cases]
    for model in args.realisation_models.split(","):
        for variant in args.variants.split(","):
            if VARIANT_DOMAIN.get(variant, domain_name) != domain_name:
                continue
            path = args.out / domain_name / "realisation" / f"{safe(model)}__{variant}.jsonl"
            if path.is_file():
                continue
            start = time.perf_counter()
            rows = asyncio.run(realisation_rows(domain, model, variant, cases, args.max_tokens, args.data_dir))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            tmp.rename(path)
            print(f"{path}: {sum(r['read'] == r['strategy'] for r in rows)}/{len(rows)} realised "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


def shown_lines(domain_name: str, data_dir: Path | None) -> dict[str, list[str]]:
    """Strategy -> the few-shot lines the prompt shows (``--variants fewshot``)."""
    if domain_name == "negotiation":
        from ppdpp.plugins.negotiation.prompting import act_examples

        found = act_examples(str(data_dir) if data_dir else None)
        return {act: [text for text, _ in lines] for act, lines in found.items()}
    from ppdpp.plugins.tutoring.prompting import strategy_examples

    return {name: list(lines) for name, lines in strategy_examples(str(data_dir) if data_dir else None).items()}


def copied(reply: str, lines: list[str], n: int = 5) -> bool:
    """Whether ``reply`` repeats ``n`` words in a row (letters only, any case) of one of ``lines``."""
    def grams(text: str) -> set[tuple[str, ...]]:
        words = [w for w in "".join(c.lower() if c.isalpha() else " " for c in text).split()]
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    mine = grams(reply)
    return any(mine & grams(line) for line in lines)


def realisation_table(root: Path, domain_name: str, data_dir: Path | None) -> list[str]:
    files = sorted((root / "realisation").glob("*.jsonl"))
    if not files:
        return []
    runs = {f.stem: [json.loads(line) for line in f.read_text().splitlines()] for f in files}
    strategies = list(dict.fromkeys(r["strategy"] for rows in runs.values() for r in rows))
    shown = shown_lines(domain_name, data_dir)
    head = ["model / prompt", "all", "copied a shown line", *strategies]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in runs.items():
        def rate(sel):
            return f"{sum(r['read'] == r['strategy'] for r in sel) / len(sel):.2f}" if sel else "-"
        copies = sum(copied(r["reply"], shown.get(r["strategy"], [])) for r in rows) if "fewshot" in name else 0
        lines.append("| " + " | ".join([name.replace("__", " / "), f"{rate(rows)} (n={len(rows)})",
                                        f"{copies / len(rows):.2f}" if "fewshot" in name else "-",
                                        *(rate([r for r in rows if r["strategy"] == s]) for s in strategies)])
                     + " |")
    return lines


# ---- training and evaluation --------------------------------------------------------------------------------
def levers(args) -> str:
    """The suffix of the folders played with a prompt lever on (``+price``, ``+key``, ``+words``)."""
    return ("+price" if args.price_hint else "") + ("+key" if args.answer_key else "") \
        + ("+words" if args.word_hint else "")


def planner_dirs(args, domain: str) -> dict[str, Path]:
    """The trained planners; SFT+RL with the LLM in the loop was trained with the same prompt levers."""
    root = args.out / domain
    return {"sft": root / "sft" / "best", "sft+rl-template": root / "rl" / "final",
            "sft+rl-branch": root / "rl-branch" / "final", "sft+rl-dbias": root / "rl-dbias" / "final",
            "sft+rl-llm": root / f"rl-llm{levers(args)}" / "final"}


def train_piece(args, domain: str, which: str, log: list[str]) -> None:
    user, _, turns = SETTINGS[domain]
    root = args.out / domain
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    sfts = {"sft": (root / "sft", []), "rl-dbias": (root / "sft-dbias", ["--decision-bias", str(turns)])}
    sft, bias = sfts.get(which, sfts["sft"])
    if which in sfts and not (sft / "best" / "planner.json").is_file():
        run_ppdpp(["sft", "-d", domain, *data, "--out", str(sft), "--epochs", "3", "--max-length", "128",
                   "--strategy-history", *bias, "--threads", "1", "--seed", str(args.seed)], log)
    recipes = (("rl-template", "template", args.rl_episodes, 16, []),
               ("rl-branch", "template", args.rl_branch_episodes, 32, ["--branch-strategies"]),
               ("rl-dbias", "template", args.rl_dbias_episodes, 32, ["--branch-strategies", "--head-only"]),
               ("rl-llm", args.model, args.rl_llm_episodes, 16, []))
    for name, agent, episodes, per_update, how in recipes:
        out = root / name.replace("-template", "")
        out = out.with_name(out.name + levers(args)) if agent != "template" else out
        if which != name or (out / "final" / "planner.json").is_file():
            continue
        resume = ["--resume"] if (out / "checkpoints" / "latest.json").is_file() else []
        extra = ["--max-tokens", str(args.max_tokens)] if agent != "template" else []
        run_ppdpp(["rl", "-d", domain, *data, "--planner", str(sft / "best"), "--agent", agent, "--user", user,
                   "--critic", "oracle", "--episodes", str(episodes), "--episodes-per-update", str(per_update),
                   "--lr", "2e-5", "--max-turns", str(turns), "--concurrency", "16", "--seed", str(args.seed),
                   "--out", str(out), *how, *extra, *resume], log,
                  price_hint=args.price_hint, answer_key=args.answer_key, word_hint=args.word_hint)


def eval_dir(args, domain: str, policy: str) -> Path:
    return args.out / domain / f"eval-{safe(policy)}{levers(args)}{'' if args.split == 'test' else '@' + args.split}"


def eval_piece(args, domain: str, policy: str, log: list[str]) -> None:
    user, _, turns = SETTINGS[domain]
    out = eval_dir(args, domain, policy)
    fixed = []
    if policy == "fixed-plan":  # an open-loop plan (benchmarks/plan_ceiling.py): the plan is the run's setting
        if not args.fixed_plan:
            raise SystemExit("--policies fixed-plan needs --fixed-plan S1,S2,... (one strategy per turn)")
        fixed = ["--fixed-plan", args.fixed_plan]
        recorded = out / "config.json"
        if recorded.is_file() and json.loads(recorded.read_text()).get("fixed_plan") != args.fixed_plan:
            raise SystemExit(f"{out} was played with another plan ({recorded}: fixed_plan); move it away first")
    if (out / "report.json").is_file():
        return
    planners = planner_dirs(args, domain)
    if policy in planners:
        if not (planners[policy] / "planner.json").is_file():
            print(f"skip {domain} {policy}: {planners[policy]} is not trained yet", flush=True)
            return
        which = ["--planner", str(planners[policy]), "--baselines", ""]
    else:
        which = ["--baselines", policy, *fixed]
    if held_elsewhere(out):
        print(f"skip {out}: another process (pid in {out / 'running.pid'}) is playing it", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "running.pid").write_text(str(os.getpid()), encoding="utf-8")
    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    seconds = run_ppdpp(["evaluate", "-d", domain, *data, "--agent", args.model, "--user", user, "--critic",
                         "oracle", *which, "--split", args.split, "--cases", str(args.cases), "--max-turns", str(turns),
                         "--seed", str(args.seed), "--out", str(out), "--max-tokens", str(args.max_tokens),
                         *RUN_SETTINGS], log,
                        price_hint=args.price_hint, answer_key=args.answer_key, word_hint=args.word_hint)
    (out / "wall.json").write_text(json.dumps({"wall_s": seconds, "load": os.getloadavg()}), encoding="utf-8")


def held_elsewhere(out: Path) -> bool:
    """Whether a live process other than this one is playing the piece in ``out`` (its ``running.pid``)."""
    try:
        pid = int((out / "running.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid != os.getpid()


def transcripts(out: Path) -> list[dict]:
    files = sorted((out / "transcripts").glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


# ---- the LLM critic on the same dialogues -----------------------------------------------------------------
async def critic_rows(args, domain_name: str, episodes: list[dict]) -> list[dict]:
    from ppdpp.planner.core.domain import Turn
    from ppdpp.planner.llm import open_chat
    from ppdpp.planner.registry.manager import get_domain
    from ppdpp.simulators.critic import Critic

    domain = get_domain(domain_name)
    cases = {c.id: c for c in domain.load_cases(args.split, args.data_dir)}
    llm = open_chat(args.model, cache="all")
    critic = Critic(llm, "greedy", max_tokens=32)
    try:
        def history(ep):
            turns = [Turn(t["speaker"], t["text"]) for t in ep["opening"]]
            for step in ep["steps"]:
                turns += [Turn("agent", step["agent"]), Turn("user", step["user"])]
            return turns
        verdicts = await asyncio.gather(*(critic.judge(domain, cases[ep["case_id"]], history(ep), seed=ep["seed"])
                                          for ep in episodes))
    finally:
        await llm.aclose()
    return [{"episode_id": ep["episode_id"], "oracle": bool(ep["success"]), "critic": bool(v.judgement.success)}
            for ep, v in zip(episodes, verdicts)]


def critic_piece(args, domain: str) -> None:
    for policy in args.policies.split(","):
        out = eval_dir(args, domain, policy)
        path = out / "llm-critic.jsonl"
        if not (out / "report.json").is_file() or path.is_file():
            continue
        rows = asyncio.run(critic_rows(args, domain, transcripts(out)))
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# ---- the table --------------------------------------------------------------------------------------------
def entropy(counts: collections.Counter) -> float:
    total = sum(counts.values())
    return abs(sum(c / total * math.log2(c / total) for c in counts.values() if c)) if total else 0.0


def policy_rows(args, domain: str) -> dict[str, dict]:
    """Finished policies: per-case values, the report, realisation of their own turns, critic agreement."""
    from ppdpp.planner.registry.manager import get_domain

    _, metric, _ = SETTINGS[domain]
    dom = get_domain(domain)
    cases = {c.id: c for c in dom.load_cases(args.split, args.data_dir)}
    read = reader(domain, args.data_dir)
    found = {}
    for policy in args.policies.split(","):
        out = eval_dir(args, domain, policy)
        eps = transcripts(out)  # finished dialogues, also of a piece still running or stopped
        if not eps:
            continue
        steps = [(s, cases[ep["case_id"]]) for ep in eps for s in ep["steps"]]
        planned = [(s, c) for s, c in steps if s["strategy"] is not None]
        usage = [step.get("usage", {}).get("agent", {}) for step, _ in steps]
        report = json.loads((out / "report.json").read_text())["policies"][0] if (out / "report.json").is_file() \
            else None  # its totals count every LLM call (the planner's too); transcripts only the agent's
        row = {"finished": report is not None, "values": {},
               "at": sum(ep["turns"] for ep in eps) / len(eps),
               "tokens": (report["prompt_tokens"], report["completion_tokens"]) if report else
                         (sum(u.get("prompt_tokens", 0) for u in usage),
                          sum(u.get("completion_tokens", 0) for u in usage)),
               "strategies": collections.Counter(s["strategy"] for s, _ in steps),
               "realised": (sum(read(s["agent"], c) == s["strategy"] for s, c in planned), len(planned)),
               "wall": json.loads((out / "wall.json").read_text()) if (out / "wall.json").is_file() else {}}
        for m in (metric, "success"):
            row["values"][m] = {ep["case_id"]: float(ep["success"]) if m == "success" else
                                float(ep["metrics"].get(m, 0.0)) for ep in eps}
        critic = out / "llm-critic.jsonl"
        if critic.is_file():
            rows = [json.loads(line) for line in critic.read_text().splitlines()]
            row["critic"] = (sum(r["oracle"] == r["critic"] for r in rows) / len(rows),
                             sum(r["critic"] and not r["oracle"] for r in rows) / len(rows))
        found[policy] = row
    return found


def eval_table(args, domain: str) -> list[str]:
    _, metric, turns = SETTINGS[domain]
    rows = policy_rows(args, domain)
    if not rows:
        return []
    metrics = [metric, "success"] if metric != "success" else ["success"]
    lines = []
    for m in metrics:
        label = "SR" if m == "success" else m.upper()
        lines += [f"| policy | n | {label} [95%] | AT | realised | strategies (top 3) | entropy (bits) | "
                  "critic agree / false success | wall s | tokens in / out |", "|" + "---|" * 10]
        for name, row in rows.items():
            values = list(row["values"][m].values())
            e = estimate(values)
            top = ", ".join(f"{k or 'none'} {v / sum(row['strategies'].values()):.0%}"
                            for k, v in row["strategies"].most_common(3))
            real = f"{row['realised'][0] / row['realised'][1]:.2f}" if row["realised"][1] else "-"
            crit = " / ".join(f"{x:.2f}" for x in row["critic"]) if "critic" in row else "-"
            n = f"{len(values)}" if row["finished"] else f"{len(values)} (partial)"
            lines.append(f"| {name} | {n} | {e.mean:.3f} [{e.low:.3f}, {e.high:.3f}] | {row['at']:.2f} | "
                         f"{real} | {top} | {entropy(row['strategies']):.2f} | {crit} | "
                         f"{row['wall'].get('wall_s', float('nan')):.0f} | {row['tokens'][0]} / {row['tokens'][1]} |")
        lines.append("")
        for best in TRAINED:
            if best not in rows:
                continue
            lines += [f"{best} minus each policy, {label}, paired over the cases both played:", "",
                      "| policy | n | difference [95%] | p |", "|---|---|---|---|"]
            for name, row in rows.items():
                if name == best:
                    continue
                common = sorted(set(rows[best]["values"][m]) & set(row["values"][m]))
                if not common:
                    continue
                d = paired_difference([rows[best]["values"][m][c] for c in common],
                                      [row["values"][m][c] for c in common])
                lines.append(f"| {name} | {len(common)} | {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | "
                             f"{d.p_value:.4f} |")
            lines.append("")
    return lines


def table_piece(args) -> str:
    parts = [f"agent `{args.model}`, oracle critic, {args.split} split, first {args.cases} cases asked "
             f"(n per row = finished){', price hint ON' if args.price_hint else ''}"
             f"{', answer key ON' if args.answer_key else ''}{', word hint ON' if args.word_hint else ''}", ""]
    for domain in args.domains.split(","):
        user, metric, turns = SETTINGS[domain]
        parts += [f"### {domain} ({user} user, {turns} turns)", ""]
        real = realisation_table(args.out / domain, domain, args.data_dir)
        if real:
            parts += ["Realisation on the valid split (reply at the opening, read by the simulator's reader):", "",
                      *real, ""]
        parts += eval_table(args, domain)
    text = "\n".join(parts)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--piece", default="all", type=pieces,
                        help=f"One piece, or a comma list run in one process in the order above: {', '.join(PIECES)}.")
    parser.add_argument("--out", type=Path, default=Path("runs/llm-agent"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--domains", default="negotiation,tutoring")
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--fixed-plan", default="",
                        help="The plan of the fixed-plan policy (--policies fixed-plan), e.g. "
                             "Correction,Correction,Confirmation,Correction: benchmarks/plan_ceiling.py's best.")
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--price-hint", action="store_true", help="Evaluate with the negotiation price hint.")
    parser.add_argument("--answer-key", action="store_true", help="Evaluate with the tutoring answer key.")
    parser.add_argument("--word-hint", action="store_true",
                        help="Evaluate with the tutoring word hint (the template Teacher's line for the move).")
    parser.add_argument("--split", default="test", choices=("valid", "test"),
                        help="The cases evaluated (valid: for tuning a lever).")
    parser.add_argument("--realisation-models", default="local/smollm2,local/qwen2.5-coder-1.5b")
    parser.add_argument("--realisation-cases", type=int, default=12)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--max-tokens", type=int, default=48,
                        help="Tokens per agent reply: realisation, rl-llm and eval.")
    parser.add_argument("--rl-episodes", type=int, default=512, help="RL episodes with the template agent.")
    parser.add_argument("--rl-branch-episodes", type=int, default=1024,
                        help="RL episodes with the template agent and all-strategy branching.")
    parser.add_argument("--rl-dbias-episodes", type=int, default=4096,
                        help="RL episodes of the rl-dbias piece (head and per-decision bias, with branching).")
    parser.add_argument("--rl-llm-episodes", type=int, default=64, help="RL episodes with the LLM agent.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from ppdpp.planner.toolkit.datafiles import resolve_data_dir

    args.data_dir = resolve_data_dir(args.data_dir)
    log: list[str] = []
    start = time.perf_counter()
    wanted = set(PIECES) - set(NAMED_ONLY) if "all" in args.piece else set(args.piece)
    for domain in args.domains.split(","):
        if "realisation" in wanted:
            realisation_piece(args, domain)
        for which in ("sft", "rl-template", "rl-branch", "rl-dbias", "rl-llm"):
            if which in wanted:
                train_piece(args, domain, which, log)
        if "eval" in wanted:
            for policy in args.policies.split(","):
                eval_piece(args, domain, policy, log)
        if "critic" in wanted:
            critic_piece(args, domain)
    print(table_piece(args))
    print(f"\n{time.perf_counter() - start:.0f} s; commands:\n" + "\n".join(log))


if __name__ == "__main__":
    main()
