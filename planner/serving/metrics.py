"""Prometheus metrics of ppdpp's servers (``ppdpp serve``, ``ppdpp serve-llm``, ``ppdpp ui``), on ``GET /metrics``.

Each application gets its own :class:`ServerMetrics` (its own ``prometheus_client`` registry, so two servers in one
process, as in the tests, never mix their counts). A middleware counts every request by route template, method and
status and times it; the servers add what only they know: the planner's time and decisions, the upstream call's
time, tokens, and the admission queue. docs/serving.md#metrics lists every metric.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ppdpp.planner.core.types import Usage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
UNMATCHED = "unmatched"  # the route label of a path no route serves (a 404): never the raw path


class ServerMetrics:
    """The metrics of one server; ``server`` becomes a constant label of every series."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=True)
        labels: dict[str, Any] = {"registry": self.registry, "namespace": "ppdpp"}
        self.requests = Counter("http_requests", "HTTP requests answered, by route template, method and status.",
                                ["server", "route", "method", "status"], **labels)
        self.latency = Histogram("http_request_duration_seconds", "Time from a request's arrival to its last byte.",
                                 ["server", "route"], buckets=LATENCY_BUCKETS, **labels)
        self.planning = Histogram("planning_duration_seconds", "Time the planner took to choose a strategy.",
                                  ["server"], buckets=LATENCY_BUCKETS, **labels)
        self.upstream = Histogram("upstream_duration_seconds", "Time of the model call behind a request.",
                                  ["server"], buckets=LATENCY_BUCKETS, **labels)
        self.prompt_tokens = Counter("prompt_tokens", "Prompt tokens of answered requests.", ["server"], **labels)
        self.completion_tokens = Counter("completion_tokens", "Completion tokens of answered requests.",
                                         ["server"], **labels)
        self.admitted = Gauge("requests_admitted", "Requests being answered or waiting for the model now.",
                              ["server"], **labels)
        self.shed = Counter("requests_shed", "Requests refused with 429 because the queue was full.", ["server"],
                            **labels)
        self.timeouts = Counter("request_timeouts", "Requests answered 504 (the request or the upstream timed out).",
                                ["server"], **labels)
        self.decisions = Counter("planner_decisions", "Strategies the planner chose, by strategy ('none': none).",
                                 ["server", "strategy"], **labels)
        self.vetoes = Counter("strategy_vetoes", "Planned strategies a guardrail or hook replaced.",
                              ["server", "strategy", "replacement"], **labels)
        for series in (self.prompt_tokens, self.completion_tokens, self.admitted, self.shed, self.timeouts):
            series.labels(server)  # present (at 0) from the first scrape

    # ---- what the servers record ------------------------------------------------------------------------
    def usage(self, usage: Usage | None) -> None:
        """Count the tokens of one answered request."""
        if usage is not None:
            self.prompt_tokens.labels(self.server).inc(max(usage.prompt_tokens, 0))
            self.completion_tokens.labels(self.server).inc(max(usage.completion_tokens, 0))

    def decision(self, strategy: str | None) -> None:
        self.decisions.labels(self.server, "none" if strategy is None else strategy).inc()

    def veto(self, strategy: str | None, replacement: str | None) -> None:
        self.vetoes.labels(self.server, str(strategy), str(replacement)).inc()

    def planning_timer(self) -> Any:
        """A context manager timing the planner (``with metrics.planning_timer(): ...``)."""
        return self.planning.labels(self.server).time()

    def upstream_timer(self) -> Any:
        """A context manager timing the model call, failed ones too."""
        return self.upstream.labels(self.server).time()

    def queue(self, admitted: int) -> None:
        self.admitted.labels(self.server).set(admitted)

    # ---- the middleware and the route -------------------------------------------------------------------
    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Count and time every request; put it outermost, so that it sees the status the client gets."""

        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                route = _route(request)
                self.requests.labels(self.server, route, request.method, str(status)).inc()
                self.latency.labels(self.server, route).observe(time.perf_counter() - started)
                if status == 429:
                    self.shed.labels(self.server).inc()
                elif status == 504:
                    self.timeouts.labels(self.server).inc()

        return measure

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the text exposition format."""
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response


def _route(request: web.Request) -> str:
    """The route's template (``/api/transcripts/{name}``), never the raw path: unbounded labels would grow forever."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return UNMATCHED
    return resource.canonical


METRICS = web.AppKey("metrics", ServerMetrics)


def attach_metrics(app: web.Application, server: str) -> ServerMetrics:
    """Give ``app`` (not started yet) its metrics: the counting middleware, outermost, and ``GET /metrics``
    (behind the app's bearer token where it has one)."""
    metrics = app[METRICS] = ServerMetrics(server)
    app.middlewares.insert(0, metrics.middleware())
    app.router.add_get("/metrics", metrics.handle)
    return metrics
