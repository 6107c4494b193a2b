"""Configuration: defaults, bad files refused with key path, value and what is allowed, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.config import effective, load
from control_plane.errors import ConfigError


def test_embedded_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no file and no env var, the defaults apply (ES on 9200, Shanghai time, SQLite state)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVCTL_CONFIG", raising=False)
    s = load()
    assert s.source == "embedded defaults"
    assert s.services.elasticsearch.port == 9200 and s.api.port == 8700
    assert s.scheduler.timezone == "Asia/Shanghai"
    assert s.state_url().startswith("sqlite:///") and str(tmp_path) in s.state_url()


def test_env_var_selects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GOVCTL_CONFIG points at the file; relative paths resolve against its folder."""
    (tmp_path / "c.yaml").write_text("var_dir: state-here\napi: {port: 9999}\n")
    monkeypatch.setenv("GOVCTL_CONFIG", str(tmp_path / "c.yaml"))
    s = load()
    assert s.api.port == 9999 and s.var == tmp_path / "state-here"


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("services:\n  elasticsearch:\n    port: 99999\n", ["services.elasticsearch.port", "99999", "less than or equal to 65535"]),
        ("services:\n  elasticserch: {}\n", ["services.elasticserch", "unknown key", "elasticsearch", "postgres"]),
        ("scheduler:\n  timezone: Mars/Olympus\n", ["scheduler.timezone", "Mars/Olympus", "IANA"]),
        ("audit:\n  checkpoint_every_records: 0\n", ["audit.checkpoint_every_records", "greater than or equal to 1"]),
        ("api: [1, 2]\n", ["api", "[1, 2]"]),
    ],
)
def test_bad_values_are_explained(tmp_path: Path, yaml_text: str, expected: list[str]) -> None:
    """Each bad key names its path, the bad value and what is allowed."""
    (tmp_path / "bad.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError) as ei:
        load(tmp_path / "bad.yaml")
    for fragment in expected:
        assert fragment in ei.value.message, ei.value.message


def test_broken_yaml_has_line_and_column(tmp_path: Path) -> None:
    """A syntax error is reported with file, line and column."""
    (tmp_path / "b.yaml").write_text("api:\n  port: 1\n   host: x\n")
    with pytest.raises(ConfigError, match=r"b\.yaml:3:\d+"):
        load(tmp_path / "b.yaml")


def test_missing_file(tmp_path: Path) -> None:
    """A named file that does not exist is an error, not silently the defaults."""
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.yaml")


def test_secrets_masked(tmp_path: Path) -> None:
    """Passphrases and DB URLs print as **** (service passwords are generated into 0600 files, never configured)."""
    (tmp_path / "c.yaml").write_text(
        "crypto: {key_passphrase: sesame}\n"
        "state: {url: 'postgresql+psycopg://u:topsecret@127.0.0.1/db'}\n"
    )
    shown = repr(effective(load(tmp_path / "c.yaml")))
    assert "sesame" not in shown and "topsecret" not in shown
    assert shown.count("****") == 2


def test_submitting_without_a_province_key_is_a_configuration_error(tmp_path: Path) -> None:
    """On the embedded defaults nothing is sealed for a made-up province: report.submit is refused with what to set."""
    from control_plane.gate import OperationRequest
    from control_plane.gate.models import Principal
    from control_plane.wiring import context_for
    from tests.conftest import make_test_config, write_config

    data = make_test_config(var_dir=tmp_path / "var")
    data.pop("report", None)
    ctx = context_for(load(write_config(tmp_path / "govctl.yaml", data)))
    with pytest.raises(ConfigError, match="report.endpoint is not set") as ei:
        ctx.gate.submit(Principal("ops", ("ops_engineer",), "local", "peer"), OperationRequest("report.submit", "2026-10", {}))
    assert "report.province_public_key" in (ei.value.hint or "")
    assert ctx.ledger.query(operation="report.submit")[0].outcome == "refused"
    assert not (tmp_path / "var" / "report-receiver").exists()  # no stand-in key pair made behind the operator's back
