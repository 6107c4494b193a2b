"""Reading Prometheus for the report: prometheus-api-client with timeouts, aware datetimes, a step
that respects the 11,000-points-per-series limit, gaps kept as gaps (NaN), and every query
recorded for the report's provenance."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from control_plane.errors import GovctlError

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


class PrometheusUnavailable(GovctlError):
    """Prometheus could not answer; nothing is built from partial answers."""

    exit_code = 6

    http_status = 503


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # noqa: D102
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


def choose_step(window_s: float, min_step_s: int = 60) -> int:
    """The smallest usual step ≥ ``min_step_s`` that keeps a series under 11,000 points."""
    for s in STEPS:
        if s >= min_step_s and window_s / s + 1 <= MAX_POINTS:
            return s
    return int(math.ceil(window_s / (MAX_POINTS - 1)))


@dataclass
class Grid:
    """The time grid of a report: start + i·step for i in [0, n)."""

    start: datetime
    end: datetime
    step: int

    @property
    def n(self) -> int:
        """Number of points."""
        return int((self.end - self.start).total_seconds() // self.step)

    @property
    def last(self) -> datetime:
        """The last grid point (end − step)."""
        return self.start + timedelta(seconds=self.step * (self.n - 1))


@dataclass
class Prom:
    """A Prometheus server, and the log of what was asked of it."""

    url: str
    timeout: float = 30.0
    queries: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.pc = PrometheusConnect(url=self.url, disable_ssl=True, session=_TimeoutSession(self.timeout), timeout=self.timeout, method="POST")

    def _call(self, kind: str, expr: str, fn: Any, **meta: Any) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn()
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer {kind} query {expr[:80]!r}: {str(exc)[:200]}",
                                        hint="start it (govctl services up prometheus) and build again; nothing was stored") from None  # fmt: skip
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.queries.append({"type": kind, "expr": expr, **meta, "series": len(out), "seconds": round(dt, 3)})
        return out

    def range(self, expr: str, grid: Grid) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
        """Each series of a range query on the grid, keyed by its sorted labels; missing points are NaN."""
        raw = self._call("range", expr, lambda: self.pc.custom_query_range(expr, start_time=grid.start, end_time=grid.last, step=str(grid.step)),
                         start=grid.start.isoformat(), end=grid.last.isoformat(), step=grid.step)  # fmt: skip
        t0 = grid.start.timestamp()
        out = {}
        for s in raw:
            arr = np.full(grid.n, np.nan)
            vals = s.get("values") or []
            if vals:
                ts = np.fromiter((v[0] for v in vals), dtype=float, count=len(vals))
                idx = np.rint((ts - t0) / grid.step).astype(int)
                ok = (idx >= 0) & (idx < grid.n)
                arr[idx[ok]] = np.fromiter((float(v[1]) for v in vals), dtype=float, count=len(vals))[ok]
            out[tuple(sorted((s.get("metric") or {}).items()))] = arr
        self.queries[-1]["points"] = int(sum(int(np.count_nonzero(~np.isnan(a))) for a in out.values()))
        return out

    def instant(self, expr: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples at ``at``."""
        raw = self._call("instant", expr, lambda: self.pc.custom_query(expr, params={"time": at.timestamp()}), time=at.isoformat())
        return [(s.get("metric") or {}, float(s["value"][1])) for s in raw]

    def build_info(self) -> dict[str, Any]:
        """Prometheus's version (for provenance)."""
        try:
            r = self.pc._session.get(f"{self.url}/api/v1/status/buildinfo", timeout=self.timeout)
            return dict(r.json().get("data") or {})
        except (requests.RequestException, ValueError):
            return {}
