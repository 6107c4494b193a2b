"""A known month of monitoring data, written as OpenMetrics for ``promtool tsdb create-blocks-from``.

Everything is defined by plain functions of time (the "truth"), sampled every 60 s. The same
functions give the expected figures in the tests, computed here in Python without Prometheus,
without our report code and without its recording rules.

October 2026 (Asia/Shanghai), with what real months have:
* three hosts in two pools, two network zones and three departments (one not registered);
* ``pa-data-1`` down for three hours on 20 October (``up`` = 0, no node metrics);
* ``pb-data-1`` added on 15 October;
* Prometheus itself down for all of 10 October (no samples at all);
* API traffic (a latency histogram and errors), backup runs and a real-time RPO series.
Six days of September for two hosts give a previous month to compare with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

SH = ZoneInfo("Asia/Shanghai")
GIB = 1024**3
STEP = 60
MONTH = "2026-10"
M_START = datetime(2026, 10, 1, tzinfo=SH)
M_END = datetime(2026, 11, 1, tzinfo=SH)
DATA_START = datetime(2026, 9, 25, tzinfo=SH)
GAP = (datetime(2026, 10, 10, tzinfo=SH).timestamp(), datetime(2026, 10, 11, tzinfo=SH).timestamp())  # Prometheus down
DOWN = (datetime(2026, 10, 20, 10, tzinfo=SH).timestamp(), datetime(2026, 10, 20, 13, tzinfo=SH).timestamp())  # pa-data-1 down


@dataclass(frozen=True)
class Host:
    """One monitored machine."""

    name: str
    pool: str
    zone: str
    department: str
    cpus: int
    mem_gib: float
    disk_gib: float
    since: float  # first sample (epoch seconds)

    @property
    def instance(self) -> str:
        """Its scrape target."""
        return f"{self.name}:9100"


HOSTS = [
    Host("pa-app-1", "primary", "egov", "city-big-data-bureau", 4, 16, 200, DATA_START.timestamp()),
    Host("pa-data-1", "primary", "egov", "health-commission", 8, 64, 1000, DATA_START.timestamp()),
    Host("pb-data-1", "backup", "internet", "water-bureau", 2, 8, 500, datetime(2026, 10, 15, tzinfo=SH).timestamp()),
]


def cpu_util(h: Host, t: float) -> float:
    """CPU utilisation during the minute ending at t (constant within each Shanghai hour)."""
    lt = datetime.fromtimestamp(t - 1, SH)
    if t < M_START.timestamp():
        return {"pa-app-1": 0.10, "pa-data-1": 0.04}.get(h.name, 0.3)
    if h.name == "pa-app-1":
        busy = lt.weekday() < 5 and 9 <= lt.hour < 18
        return 0.80 if busy else 0.20 + 0.01 * (lt.hour % 5)
    if h.name == "pa-data-1":
        return 0.05
    return 0.30 + 0.02 * (lt.day % 4)


def mem_used(h: Host, t: float) -> float:
    """Memory in use (fraction), constant within a Shanghai day."""
    d = datetime.fromtimestamp(t, SH).day
    return {"pa-app-1": 0.5 + 0.1 * (d % 3), "pa-data-1": 0.7, "pb-data-1": 0.25}[h.name]


def disk_used(h: Host, t: float) -> float:
    """Root filesystem in use (fraction), growing day by day."""
    d = (datetime.fromtimestamp(t, SH).date() - DATA_START.date()).days
    return {"pa-app-1": 0.40, "pa-data-1": 0.60, "pb-data-1": 0.10}[h.name] + 0.002 * d


RX_BPS = {"pa-app-1": 1_000_000.0, "pa-data-1": 250_000.0, "pb-data-1": 4_000_000.0}
TX_BPS = {"pa-app-1": 500_000.0, "pa-data-1": 125_000.0, "pb-data-1": 100_000.0}


def prom_up(t: float) -> bool:
    """Prometheus was running (scraping) at t."""
    return not GAP[0] <= t < GAP[1]


def host_up(h: Host, t: float) -> bool:
    """node_exporter answered at t."""
    return not (h.name == "pa-data-1" and DOWN[0] <= t < DOWN[1])


def rpo(t: float) -> float:
    """The real-time source's lag at t (seconds)."""
    return 1.0 + (int(t // 60) % 7)


def backup_marks(a: float, b: float) -> int:
    """Periodic backups (every 6 h on the hour) in (a, b]."""
    return int(b // 21600) - int(a // 21600)


FAILED_AT = [datetime(2026, 10, 5, 3, tzinfo=SH).timestamp(), datetime(2026, 10, 22, 15, tzinfo=SH).timestamp()]


def times(end: float) -> Iterator[float]:
    """Sample times from the data start to ``end`` inclusive."""
    t = DATA_START.timestamp()
    while t <= end:
        yield t
        t += STEP


@dataclass
class Raw:
    """What Prometheus scraped from one host: sample times and values per figure."""

    up: dict[float, float]
    idle: dict[float, float]  # per CPU (all CPUs alike)
    mem_avail: dict[float, float]
    disk_avail: dict[float, float]
    rx: dict[float, float]
    tx: dict[float, float]


def raw(h: Host, end: float = M_END.timestamp()) -> Raw:
    """The host's scraped samples (counters keep counting while nobody scrapes)."""
    r = Raw({}, {}, {}, {}, {}, {})
    idle = rx = tx = 0.0
    for t in times(end):
        if t < h.since:
            continue
        idle += STEP * (1 - cpu_util(h, t))
        rx += STEP * RX_BPS[h.name]
        tx += STEP * TX_BPS[h.name]
        if not prom_up(t):
            continue
        r.up[t] = 1.0 if host_up(h, t) else 0.0
        if host_up(h, t):
            r.idle[t], r.rx[t], r.tx[t] = idle, rx, tx
            r.mem_avail[t] = h.mem_gib * GIB * (1 - mem_used(h, t))
            r.disk_avail[t] = h.disk_gib * GIB * (1 - disk_used(h, t))
    return r


def openmetrics(end: float = M_END.timestamp()) -> Iterator[str]:
    """The whole data set, one OpenMetrics line at a time (families grouped as the format requires)."""
    fam: dict[str, list[str]] = {}

    def add(name: str, labels: str, value: float, t: float) -> None:
        fam.setdefault(name, []).append(f"{name}{{{labels}}} {value!r} {int(t)}\n")

    for h in HOSTS:
        base = f'job="node",instance="{h.instance}",pool="{h.pool}",network_zone="{h.zone}",department="{h.department}",host="{h.name}"'
        r = raw(h, end)
        for t, v in r.up.items():
            add("up", base, v, t)
        for c in range(h.cpus):
            for t, v in r.idle.items():
                add("node_cpu_seconds_total", f'{base},cpu="{c}",mode="idle"', v, t)
        fs = f'{base},device="/dev/vda1",fstype="ext4",mountpoint="/"'
        for t in r.idle:
            add("node_memory_MemTotal_bytes", base, h.mem_gib * GIB, t)
            add("node_memory_MemAvailable_bytes", base, r.mem_avail[t], t)
            add("node_filesystem_size_bytes", fs, h.disk_gib * GIB, t)
            add("node_filesystem_avail_bytes", fs, r.disk_avail[t], t)
            add("node_network_receive_bytes_total", f'{base},device="eth0"', r.rx[t], t)
            add("node_network_transmit_bytes_total", f'{base},device="eth0"', r.tx[t], t)
    api = 'job="govctl",instance="127.0.0.1:8700"'
    route = f'{api},method="POST",route="/api/v1/ops",status="200"'
    for t in times(end):
        if not prom_up(t):
            continue
        add("up", api, 1.0, t)
        for le, per_min in (("0.1", 90), ("0.5", 100), ("+Inf", 100)):
            add("govctl_http_request_duration_seconds_bucket", f'{route},le="{le}"', float(per_min * minutes(t)), t)
        add("govctl_http_request_duration_seconds_count", route, float(100 * minutes(t)), t)
        add("govctl_http_errors_total", f'{api},route="/api/v1/ops"', float(2 * minutes(t)), t)
        add("govctl_backup_runs_total", f'{api},source="pg-main",kind="periodic",outcome="succeeded"', float(backup_marks(DATA_START.timestamp(), t)), t)
        add("govctl_backup_runs_total", f'{api},source="pg-main",kind="periodic",outcome="failed"', float(sum(1 for f in FAILED_AT if f <= t)), t)
        add("govctl_dr_rpo_seconds", f'{api},source="files-docs"', rpo(t), t)
    for name, lines in fam.items():
        yield f"# TYPE {name} {'gauge' if name in GAUGES else 'unknown'}\n"
        yield from lines
    yield "# EOF\n"


GAUGES = {"up", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", "node_filesystem_size_bytes", "node_filesystem_avail_bytes",
          "govctl_dr_rpo_seconds"}  # fmt: skip


def minutes(t: float) -> int:
    """Minutes since the data began (counter base)."""
    return int((t - DATA_START.timestamp()) // 60)


# -- the expected figures: Prometheus' evaluation rules written out, applied to the raw samples ------

WINDOW = 300.0  # [5m] in the recording rules, and the default lookback


def _in_window(series: dict[float, float], t: float) -> list[tuple[float, float]]:
    """Samples with timestamps in [t − 5m, t] (Prometheus 2.x range and lookback windows are closed)."""
    m = math.ceil((t - WINDOW) / STEP) * STEP
    out = []
    while m <= t:
        if m in series:
            out.append((m, series[m]))
        m += STEP
    return out


def prom_rate(series: dict[float, float], t: float) -> float | None:
    """rate(x[5m]) at t, with Prometheus' extrapolation (promql/functions.go extrapolatedRate)."""
    pts = _in_window(series, t)
    if len(pts) < 2:
        return None
    (t0, v0), (t1, v1) = pts[0], pts[-1]
    delta = v1 - v0
    sampled = t1 - t0
    to_start, to_end = t0 - (t - WINDOW), t - t1
    avg = sampled / (len(pts) - 1)
    if delta > 0 and v0 >= 0:
        to_start = min(to_start, sampled * (v0 / delta))
    thr = avg * 1.1
    ext = sampled + (to_start if to_start < thr else avg / 2) + (to_end if to_end < thr else avg / 2)
    return delta * (ext / sampled) / WINDOW


def latest(series: dict[float, float], t: float) -> float | None:
    """An instant selector at t: the newest sample in [t − 5m, t]."""
    pts = _in_window(series, t)
    return pts[-1][1] if pts else None


def latest_any(series: dict[float, float], times_sorted: list[float], t: float) -> float | None:
    """Like ``latest`` for a series whose timestamps are not on the minute grid (recorded series)."""
    import bisect

    i = bisect.bisect_right(times_sorted, t) - 1
    if i >= 0 and times_sorted[i] >= t - WINDOW:
        return series[times_sorted[i]]
    return None


def recorded(h: Host, r: Raw, offset: float) -> dict[str, dict[float, float]]:
    """The recording rules evaluated every minute at the rule group's offset within the minute (as Prometheus schedules them)."""
    out: dict[str, dict[float, float]] = {"cpu": {}, "memory": {}, "disk": {}, "rx": {}}
    e = DATA_START.timestamp() + offset
    while e <= M_END.timestamp() + STEP:
        if e >= h.since:
            rate = prom_rate(r.idle, e)
            if rate is not None:
                out["cpu"][e] = 1 - rate
            ma = latest(r.mem_avail, e)
            if ma is not None:
                out["memory"][e] = 1 - ma / (h.mem_gib * GIB)
            da = latest(r.disk_avail, e)
            if da is not None:
                out["disk"][e] = 1 - da / (h.disk_gib * GIB)
            rx = prom_rate(r.rx, e)
            if rx is not None:
                out["rx"][e] = rx
        e += STEP
    return out


def grid(step: int = 300) -> list[float]:
    """The report's grid for the month."""
    n = int((M_END - M_START).total_seconds() // step)
    return [M_START.timestamp() + i * step for i in range(n)]


def expected_host(h: Host, g: list[float], offset: float) -> dict[str, list[float | None]]:
    """Per grid point, what a range query returns: the newest recorded (or, for up, raw) sample in [t − 5m, t]."""
    r = raw(h)
    rec = recorded(h, r, offset)
    out: dict[str, list[float | None]] = {}
    for k, v in rec.items():
        ts = sorted(v)
        out[k] = [latest_any(v, ts, t) for t in g]
    out["up"] = [latest(r.up, t) for t in g]
    return out


def nearest_rank(xs: list[float], p: float) -> float:
    """The ⌈p·n⌉-th smallest value."""
    s = sorted(xs)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def stats(xs: list[float | None]) -> dict[str, float | None]:
    """mean, p95, peak, coverage."""
    v = [x for x in xs if x is not None]
    if not v:
        return {"mean": None, "p95": None, "peak": None, "coverage": 0.0}
    return {"mean": sum(v) / len(v), "p95": nearest_rank(v, 0.95), "peak": max(v), "coverage": len(v) / len(xs)}
