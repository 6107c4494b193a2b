"""Prometheus rule files: promtool accepts them and their unit tests pass; a broken rule or a wrong expectation fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MONITORS = Path(__file__).resolve().parents[2] / "monitors"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _promtool(*args: str, cwd: Path = MONITORS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_rule_files_check() -> None:
    """promtool check rules: every rule file parses and every expression is valid PromQL."""
    files = sorted(str(p) for p in (MONITORS / "rules").glob("*.yml"))
    assert len(files) >= 2
    r = _promtool("check", "rules", *files)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(files)


def test_rule_unit_tests() -> None:
    """promtool test rules over monitors/tests/*.yml."""
    tests = sorted(str(p.relative_to(MONITORS)) for p in (MONITORS / "tests").glob("*_test.yml"))
    assert len(tests) >= 2
    r = _promtool("test", "rules", *tests)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the same input with a wrong expected utilisation is refused."""
    (tmp_path / "rules").mkdir()
    shutil.copy(MONITORS / "rules" / "recording.yml", tmp_path / "rules" / "recording.yml")
    (tmp_path / "tests").mkdir()
    text = (MONITORS / "tests" / "recording_test.yml").read_text().replace("value: 0.25", "value: 0.26", 1)
    (tmp_path / "tests" / "t_test.yml").write_text(text)
    r = _promtool("test", "rules", "tests/t_test.yml", cwd=tmp_path)
    assert r.returncode != 0 and "2.6E-01" in (r.stdout + r.stderr)


def test_a_broken_rule_is_refused(tmp_path: Path) -> None:
    """promtool check rules names the bad expression."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - record: x:y:z\n        expr: rate(foo[5m]\n")
    r = _promtool("check", "rules", str(bad))
    assert r.returncode != 0 and "expr" in (r.stdout + r.stderr).lower()


def test_scrape_config_has_every_pool_host_with_report_labels(tmp_path: Path) -> None:
    """Deployed hosts become node targets labelled with stack, pool, network zone and department; promtool accepts the file."""
    from control_plane.config import load
    from control_plane.monitoring import prometheus_config, write_prometheus_config
    from tests.conftest import make_test_config, write_config

    s = load(write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var")))
    outs = {"local": {"primary_hosts": {"gc-app-1": "10.77.1.2", "gc-data-1": "10.77.1.3"}, "backup_hosts": {"gc-bdata-1": "10.77.2.2"}}}
    cfg = prometheus_config(s, stacks=outs)
    node = next(j for j in cfg["scrape_configs"] if j["job_name"] == "node")["static_configs"]
    by_target = {c["targets"][0]: c["labels"] for c in node}
    assert by_target["10.77.1.3:9100"] == {"stack": "local", "pool": "primary", "network_zone": "egov", "department": "city-big-data-bureau", "host": "gc-data-1"}
    assert by_target["10.77.2.2:9100"]["pool"] == "backup"
    assert any(lab["pool"] == "control" for lab in by_target.values())
    assert str(MONITORS / "rules" / "recording.yml") in cfg["rule_files"]
    path = write_prometheus_config(s, tmp_path / "prometheus.yml")
    r = _promtool("check", "config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
