"""Prometheus metrics of the origin server, in a registry of their own per app (tests run many apps).

`OriginMetrics` holds the counters; `MetricsMiddleware` is a pure ASGI wrapper that counts every
response by route template and status and the body bytes sent; packaging jobs are read live from the
job manager at scrape time. Names:

    cdn_origin_requests_total{route, status}     responses sent (route = path template, or "unmatched")
    cdn_origin_bytes_sent_total                  response body bytes
    cdn_origin_jobs{state}                       packaging jobs now in each state
    cdn_origin_jobs_finished_total{state}        jobs that ended succeeded / failed since start
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "OriginMetrics"]

JOB_STATES = ("queued", "running", "succeeded", "failed")


class _JobsCollector(Collector):
    """Reads the current number of jobs per state at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("cdn_origin_jobs", "Packaging jobs now in each state", labels=["state"])
        counts = self._counts()
        for state in JOB_STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class OriginMetrics:
    """The origin's counters, registered in a private CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cdn_origin_requests",
            "HTTP responses by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.bytes_sent = Counter("cdn_origin_bytes_sent", "Response body bytes sent", registry=self.registry)
        self.jobs_finished = Counter(
            "cdn_origin_jobs_finished",
            "Packaging jobs that ended, by final state",
            ["state"],
            registry=self.registry,
        )

    def watch_jobs(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Report `counts()` (state -> number of jobs) as the cdn_origin_jobs gauge."""
        self.registry.register(_JobsCollector(counts))

    def job_finished(self, state: str) -> None:
        """Count a job that reached a final state."""
        self.jobs_finished.labels(state=state).inc()

    def observe(self, route: str, status: int, body_bytes: int) -> None:
        """Count one response."""
        self.requests.labels(route=route, status=str(status)).inc()
        if body_bytes:
            self.bytes_sent.inc(body_bytes)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: counts each HTTP response by route template and status, and its body bytes."""

    def __init__(self, app: Any, metrics: OriginMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        sent = 0

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "unmatched"), status, sent)
