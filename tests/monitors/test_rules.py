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
