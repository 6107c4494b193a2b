"""A Prometheus of its own holding a known month (backfilled with promtool), for the report tests.

The raw month comes from ``monthdata`` (OpenMetrics → ``promtool tsdb create-blocks-from
openmetrics``); the recording rules of ``monitors/rules/recording.yml`` are then evaluated over it
with ``promtool tsdb create-blocks-from rules`` against that Prometheus, exactly as an operator
backfills rules after importing history. The finished TSDB is cached under
``~/.cache/govctl/test-report-tsdb/<hash of the inputs>`` and copied for each session.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.report import monthdata

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitors" / "rules" / "recording.yml"
CACHE = Path(os.environ.get("GOVCTL_CACHE", Path.home() / ".cache" / "govctl")) / "test-report-tsdb"
PORT = 19091


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _kill_leftover(port: int) -> None:
    """Stop a test Prometheus left listening on ``port`` by a killed session (only ours: the test data directory names it)."""
    import signal

    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"prometheus") and f"--web.listen-address=127.0.0.1:{port}".encode() in cmd and any(
            b"month-prom" in c or b"govctl-bench-report" in c or b".work/data" in c for c in cmd
        ):
            os.kill(int(d.name), signal.SIGTERM)
            time.sleep(1)


class Prom:
    """A Prometheus process on a TSDB directory."""

    def __init__(self, data: Path, port: int = PORT) -> None:
        self.data, self.port = data, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.eval_offset = 0.0

    def start(self) -> Prom:
        cfg = self.data.parent / "prometheus.yml"
        cfg.write_text(yaml.safe_dump({"global": {"scrape_interval": "60s"}, "scrape_configs": []}))
        if not _free(self.port):
            _kill_leftover(self.port)  # a Prometheus of an interrupted earlier session
        if not _free(self.port):
            raise RuntimeError(f"port {self.port} is taken; stop whatever listens there")
        self.proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={self.data}", "--storage.tsdb.retention.time=20y",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.data.parent / "prometheus.log", "ab"))  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"test Prometheus did not become ready; see {self.data.parent / 'prometheus.log'}")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


def _key() -> str:
    h = hashlib.sha256()
    for f in (Path(monthdata.__file__), RULES):
        h.update(f.read_bytes())
    h.update(subprocess.run(["promtool", "--version"], capture_output=True, text=True).stdout.encode())
    return h.hexdigest()[:16]


def _make(dest: Path) -> None:
    work = dest.parent / (dest.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    om = work / "month.om"
    with om.open("w") as f:
        for line in monthdata.openmetrics():
            f.write(line)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=768h", str(om), str(work / "data")],
                   check=True, capture_output=True)  # fmt: skip
    om.unlink()
    p = Prom(work / "data").start()
    try:
        start = int(monthdata.DATA_START.timestamp())
        end = int(monthdata.M_END.timestamp()) + 60
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "rules", f"--start={start}", f"--end={end}", f"--url={p.url}",
                        f"--output-dir={work / 'rules'}", "--eval-interval=60s", str(RULES)], check=True, capture_output=True)  # fmt: skip
    finally:
        p.stop()
    for b in (work / "rules").iterdir():
        if b.is_dir():
            shutil.move(str(b), work / "data" / b.name)
    shutil.rmtree(work / "data" / "wal", ignore_errors=True)
    shutil.rmtree(work / "rules", ignore_errors=True)
    work.rename(dest)


@pytest.fixture(scope="session")
def month_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    """Prometheus serving the known month (raw series and recorded series)."""
    cached = CACHE / _key()
    if not (cached / "data").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        _make(cached)
    run = tmp_path_factory.mktemp("month-prom")
    shutil.copytree(cached / "data", run / "data")
    p = Prom(run / "data").start()
    # the recording rules' group is evaluated at a fixed offset within each minute (Prometheus spreads
    # groups by a hash of their name): read it off one recorded sample, for the expected-value model
    import json

    q = urllib.parse.urlencode({"query": "instance:node_cpu_utilisation:ratio[2m]", "time": str(monthdata.M_START.timestamp() + 3600)})
    res = json.loads(urllib.request.urlopen(f"{p.url}/api/v1/query?{q}", timeout=10).read())["data"]["result"]
    p.eval_offset = float(res[0]["values"][0][0]) % 60
    try:
        yield p
    finally:
        p.stop()


REGISTRY = """
network_zones: {egov: 政务外网, internet: 互联网区}
pools:
  primary: {name: 主资源池, network_zone: egov, capacity: {vcpu: 16, memory_gib: 128, storage_gib: 2000, physical_cores: 8}}
  backup: {name: 备资源池, network_zone: internet, capacity: {vcpu: 8, memory_gib: 32, storage_gib: 4000, physical_cores: 4}}
departments:
  - {code: city-big-data-bureau, name: 市政务服务和数据管理局, systems: [{code: portal, name: 政务服务网, pools: [primary]}]}
  - {code: health-commission, name: 市卫生健康委员会, systems: [{code: his, name: 全民健康信息平台, pools: [primary]}]}
"""


def make_report_rt(tmp_path: Path, month_prom: Prom):  # noqa: ANN201
    """A runtime whose Prometheus is the known month's, with the test registry and its own receiver port."""
    from control_plane.config import load
    from control_plane.wiring import context_for
    from tests.conftest import make_test_config, write_config
    from tests.standins.province import configure

    (tmp_path / "registry.yaml").write_text(REGISTRY, encoding="utf-8")
    data = make_test_config(var_dir=tmp_path / "var")
    data["services"]["prometheus"]["port"] = month_prom.port
    data["report"] = {"registry_file": str(tmp_path / "registry.yaml"), "retry_initial_s": 1, "retry_max_s": 4, "timeout_s": 10}
    configure(data, tmp_path / "var", 19790)  # the province stand-in's URL and key
    return context_for(load(write_config(tmp_path / "govctl.yaml", data)))


@pytest.fixture()
def report_rt(tmp_path: Path, month_prom: Prom):  # noqa: ANN201
    """A fresh runtime on the known month."""
    return make_report_rt(tmp_path, month_prom)
