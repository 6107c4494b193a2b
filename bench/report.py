"""Build time of one month's report for 200 hosts scraped every 15 s, and Prometheus' share of it.

The month (October 2026) is written as OpenMetrics and turned into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``, once, cached under
``~/.cache/govctl/bench-report/`` (the first run takes a few minutes; later runs start at once).
What the report reads is what Prometheus holds after such a month: ``up`` of every host at 15 s,
and the 1-minute series of the recording rules (``monitors/rules/recording.yml``) that
Prometheus evaluates while it scrapes. The raw node_exporter series themselves are not generated:
the report never reads them. Hosts spread over two pools, two network zones and ten departments,
each with its own utilisation pattern; a few hosts join mid-month and one day has no data.

The build is the whole ``govctl report build`` path: queries, figures, schema check, SM2
signature, Chinese HTML and PDF, and the .xlsx workbook. Goal: ≤ 60 s end to end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control_plane.config import load  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402
from tests.report.conftest import Prom  # noqa: E402

HOSTS = int(os.environ.get("BENCH_REPORT_HOSTS", "200"))
START = 1790784000  # 2026-10-01T00:00:00+08:00
END = START + 31 * 86400
GAP = (START + 9 * 86400, START + 10 * 86400)  # Prometheus down on 10 October
CACHE = Path(os.environ.get("GOVCTL_CACHE", Path.home() / ".cache" / "govctl")) / "bench-report"
PORT = 19191
GIB = 1024**3


def hosts() -> list[dict]:
    """200 hosts: pools, zones, departments, sizes, and when each joined."""
    out = []
    for i in range(HOSTS):
        pool = "primary" if i % 3 else "backup"
        out.append({"name": f"h{i:03d}", "pool": pool, "zone": "egov" if i % 5 else "internet", "dept": f"dept-{i % 10:02d}",
                    "cpus": (2, 4, 8, 16)[i % 4], "mem": (8, 16, 32, 64)[i % 4], "disk": (100, 200, 500, 1000)[i % 4],
                    "since": START + (14 * 86400 if i % 40 == 7 else 0), "base": 0.05 + 0.6 * ((i * 37) % 100) / 100})  # fmt: skip
    return out


def _lines(name: str, labels: str, ts: np.ndarray, vals: np.ndarray) -> str:
    keep = (ts < GAP[0]) | (ts >= GAP[1])
    ts, vals = ts[keep], vals[keep]
    pre = f"{name}{{{labels}}} "
    return "".join(f"{pre}{v:.10g} {t}\n" for t, v in zip(ts.tolist(), vals.tolist()))


def write_month(out: Path) -> int:
    """OpenMetrics for the month; returns the number of samples."""
    t15 = np.arange(START, END + 1, 15, dtype=np.int64)
    t60 = np.arange(START + 17, END + 1, 60, dtype=np.int64)  # the rule group's offset within the minute
    n = 0
    hs = hosts()
    with out.open("w") as f:
        f.write("# TYPE up gauge\n")
        for h in hs:
            lab = f'job="node",instance="{h["name"]}:9100",pool="{h["pool"]}",network_zone="{h["zone"]}",department="{h["dept"]}",host="{h["name"]}"'
            ts = t15[t15 >= h["since"]]
            up = np.ones(len(ts))
            if h["name"] == "h005":
                up[(ts >= START + 19 * 86400 + 7200) & (ts < START + 19 * 86400 + 18000)] = 0
            f.write(_lines("up", lab, ts, up))
            n += len(ts)
        rec = {"instance:node_cpu_utilisation:ratio": None, "instance:node_cpus:count": "cpus", "instance:node_memory_utilisation:ratio": None,
               "instance:node_memory_total:bytes": "mem", "instance:node_filesystem_utilisation:ratio": None,
               "instance:node_filesystem_size:bytes": "disk", "instance:node_network_receive_bytes:rate5m": None,
               "instance:node_network_transmit_bytes:rate5m": None}  # fmt: skip
        for name, const in rec.items():
            for h in hs:
                lab = f'job="node",instance="{h["name"]}:9100",pool="{h["pool"]}",network_zone="{h["zone"]}",department="{h["dept"]}",host="{h["name"]}"'
                ts = t60[t60 >= h["since"]]
                hour = ((ts + 8 * 3600) // 3600) % 24
                day = (ts - START) // 86400
                if const == "cpus":
                    v = np.full(len(ts), float(h["cpus"]))
                elif const == "mem":
                    v = np.full(len(ts), h["mem"] * float(GIB))
                elif const == "disk":
                    v = np.full(len(ts), h["disk"] * float(GIB))
                elif "cpu" in name:
                    v = np.clip(h["base"] + 0.3 * ((hour >= 9) & (hour < 18)) * (day % 7 < 5), 0, 1)
                elif "memory" in name:
                    v = np.clip(0.3 + h["base"] / 2 + 0.01 * (day % 5), 0, 1)
                elif "filesystem" in name:
                    v = np.clip(0.2 + h["base"] / 3 + 0.003 * day, 0, 1)
                else:
                    v = (1e5 + 1e6 * h["base"]) * (1.5 if "receive" in name else 0.5) * (1 + 0.5 * ((hour >= 9) & (hour < 18)))
                f.write(_lines(name, lab, ts, v))
                n += len(ts)
        f.write("# EOF\n")
    return n


def tsdb() -> tuple[Path, int]:
    """The cached TSDB for the month (made on first use)."""
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12] + f"-{HOSTS}"
    d = CACHE / key
    if (d / "data").is_dir():
        return d / "data", int((d / "samples").read_text())
    work = CACHE / (key + ".work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    print(f"generating a month of data for {HOSTS} hosts (once; cached in {CACHE}) …", flush=True)
    n = write_month(work / "month.om")
    print(f"  {n:,} samples written in {time.perf_counter() - t0:.0f} s; promtool create-blocks-from openmetrics …", flush=True)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=768h", str(work / "month.om"), str(work / "data")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    (work / "month.om").unlink()
    (work / "samples").write_text(str(n))
    work.rename(d)
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return d / "data", n


def main() -> None:
    """Measure and print; end with the RESULT line."""
    data, samples = tsdb()
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-report-"))
    shutil.copytree(data, tmp / "data")
    prom = Prom(tmp / "data", PORT).start()
    try:
        reg = {"network_zones": {"egov": "政务外网", "internet": "互联网区"},
               "pools": {"primary": {"name": "主资源池", "network_zone": "egov", "capacity": {"vcpu": 1200, "memory_gib": 4800, "storage_gib": 80000, "physical_cores": 400}},
                         "backup": {"name": "备资源池", "network_zone": "egov", "capacity": {"vcpu": 600, "memory_gib": 2400, "storage_gib": 40000, "physical_cores": 200}}},
                 "departments": [{"code": f"dept-{i:02d}", "name": f"第{i + 1}委办局", "systems": []} for i in range(10)]}  # fmt: skip
        (tmp / "registry.yaml").write_text(yaml.safe_dump(reg, allow_unicode=True), encoding="utf-8")
        cfg = {"var_dir": str(tmp / "var"), "services": {"prometheus": {"port": PORT}, "elasticsearch": {"port": 1}},
               "report": {"registry_file": str(tmp / "registry.yaml"), "timeout_s": 120}, "crypto": {"kdf_iterations": 100_000}}  # fmt: skip
        (tmp / "govctl.yaml").write_text(yaml.safe_dump(cfg))
        rt = context_for(load(tmp / "govctl.yaml"))
        rt.signer  # noqa: B018 - key creation is not part of a build
        from control_plane.report import store
        from control_plane.report.build import Builder
        from control_plane.report.prom import Prom as Client
        from control_plane.report.registry import load_registry

        # one warm-up query (Prometheus maps its blocks on first touch), not counted
        Client(prom.url, timeout=120).instant("count(up)", __import__("datetime").datetime.fromtimestamp(END - 300).astimezone())
        t0 = time.perf_counter()
        b = store.build(rt, "2026-10", actor="bench")
        total = time.perf_counter() - t0
        doc = store.load(b)
        q = sum(x["seconds"] for x in doc["provenance"]["queries"])
        t1 = time.perf_counter()
        Builder(rt, load_registry(tmp / "registry.yaml"), Client(prom.url, timeout=120), "2026-10").build(None)
        compute = time.perf_counter() - t1
    finally:
        prom.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert len(doc["hosts"]) == HOSTS, len(doc["hosts"])
    print(f"month of data: {HOSTS} hosts, {samples:,} samples (up at 15 s, recorded series at 1 min); {len(doc['provenance']['queries'])} queries")
    print(f"report build (figures, schema, SM2, HTML, PDF, xlsx): {total:.1f} s; Prometheus queries {q:.1f} s ({100 * q / total:.0f} %)")
    print(f"figures only (no signing or rendering): {compute:.1f} s")
    print(f"RESULT report_build_s={total:.2f} prometheus_query_s={q:.2f} prometheus_share={q / total:.2f} figures_only_s={compute:.2f} "
          f"hosts={HOSTS} samples={samples} goal_s=60 ratio_vs_goal={total / 60:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
