"""The standard `pulumi` CLI at the repository root: preview, up with the policy pack enforced by the engine, and a violation it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control_plane.config import load
from control_plane.context import Context
from control_plane.resources import project_root
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.deploy.test_local_stack import TEST_STACK, _netns, _ssh

ROOT = project_root()
BIN = Path(sys.executable).parent
# the test stack on its own bridge, subnets and namespace prefix
CLI_STACK = {**TEST_STACK, "local_bridge": "govpbr0", "local_gateway": "10.79.0.1/16", "local_prefix": "gp",
             "pools": {"primary": {**TEST_STACK["pools"]["primary"], "cidr": "10.79.1.0/24"},
                       "backup": {**TEST_STACK["pools"]["backup"], "cidr": "10.79.2.0/24"}}}  # fmt: skip


@pytest.fixture()
def cli_rt(tmp_path: Path) -> Context:
    data = make_test_config(var_dir=tmp_path / "var")
    data["deploy"] = {"stacks": {"local": CLI_STACK}}
    return context_for(load(write_config(tmp_path / "govctl.yaml", data)))


def _env(rt: Context, config: Path) -> dict[str, str]:
    """What an engineer exports, as the README says: `eval "$(govctl deploy cli-env)"` (run here through sh), with govctl.yaml chosen."""
    from tests.test_cli import govctl

    rt.key_passphrase()  # made on first use (govctl deploy preview would have)
    printed = govctl("deploy", "cli-env", config=config)
    assert printed.returncode == 0, printed.stderr
    assert "PULUMI_CONFIG_PASSPHRASE_FILE=" in printed.stdout and rt.key_passphrase() not in printed.stdout  # a path, never the secret
    dumped = subprocess.run(["sh", "-c", printed.stdout + "\nenv -0"], capture_output=True, env={**os.environ, "GOVCTL_CONFIG": str(config)}, check=True)
    env = dict(kv.split("=", 1) for kv in dumped.stdout.decode().split("\0") if "=" in kv)
    return {**env, "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true"}


def _pulumi(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pulumi"), *args, "--non-interactive", "--color", "never"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_pulumi_preview_and_up_with_the_policy_pack_at_the_repository_root(cli_rt: Context, tmp_path: Path) -> None:
    """govctl records the stack's settings; `pulumi preview` and `pulumi up --policy-pack infra/policy` then work from the root,
    the engine runs the pack, and the hosts answer; govctl sees the same stack."""
    from control_plane.deploy import service as deploy

    rt = cli_rt
    config = tmp_path / "govctl.yaml"
    env = _env(rt, config)
    cfg_file = tmp_path / "Pulumi.local.yaml"  # the stack's config file outside the clone (the passphrase is this test's)
    plan = deploy.preview(rt, "local")  # as `govctl deploy preview`: records the settings for the CLI
    assert plan["change_summary"].get("create", 0) > 5
    spec_file = rt.settings.var / "pulumi" / "cli" / "local.json"
    assert spec_file.stat().st_mode & 0o777 == 0o600
    try:
        p = _pulumi(["preview", "--stack", "local", "--config-file", str(cfg_file)], env)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "primary-pool-data-1" in p.stdout and "create" in p.stdout
        assert not {n for n in _netns() if n.startswith("gp-")}, "a preview creates nothing"
        p = _pulumi(["up", "--yes", "--stack", "local", "--config-file", str(cfg_file), "--policy-pack", "infra/policy"], env)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "govctl-pools" in p.stdout and "infra/policy" in p.stdout  # the engine ran the pack
        outs = deploy.outputs(rt, "local")
        assert set(outs["primary_hosts"]) == {"prim-app-1", "prim-data-1"}
        deadline = time.monotonic() + 60  # sshd in the new namespace answers once it has started
        while (r := _ssh(rt, outs["primary_hosts"]["prim-app-1"], "hostname")).stdout.strip() != "prim-app-1" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert r.stdout.strip() == "prim-app-1", r.stderr
        p = _pulumi(["up", "--yes", "--stack", "local", "--config-file", str(cfg_file)], env)  # without the pack: nothing left to change
        assert p.returncode == 0 and "unchanged" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
        again = deploy.preview(rt, "local")  # govctl and the CLI drive one stack: nothing left to do
        assert set(again["change_summary"]) <= {"same"}, again
    finally:
        deploy.destroy(rt, "local")
    assert not {n for n in _netns() if n.startswith("gp-")}


VIOLATING = '''
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Volumes(ResourceProvider):
    def create(self, props):
        return CreateResult(id_="v1", outs=props)


class Volume(Resource):
    def __init__(self, name, props):
        super().__init__(Volumes(), name, props)


# no in-program checks here: only the engine's policy pack stands in the way
Volume("plain-volume", {"kind": "volume", "encrypted": False, "tags": {"department": "city-big-data-bureau"}})
'''


def test_the_engine_refuses_a_policy_violation(cli_rt: Context, tmp_path: Path) -> None:
    """A program without our in-program checks declares an unencrypted, untagged volume: `pulumi preview --policy-pack infra/policy`
    fails in the engine with both mandatory policies named; without the pack it would go through."""
    rt = cli_rt
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Pulumi.yaml").write_text("name: violating\nruntime: python\n")
    (proj / "__main__.py").write_text(VIOLATING)
    env = _env(rt, tmp_path / "govctl.yaml")
    (rt.settings.var / "pulumi" / "state").mkdir(parents=True, exist_ok=True)
    assert _pulumi(["stack", "init", "dev"], env, cwd=proj).returncode == 0
    free = _pulumi(["preview", "--stack", "dev"], env, cwd=proj)
    assert free.returncode == 0, free.stdout[-2000:] + free.stderr[-2000:]
    p = _pulumi(["preview", "--stack", "dev", "--policy-pack", str(ROOT / "infra" / "policy")], env, cwd=proj)
    assert p.returncode != 0
    assert "encrypted-volumes" in p.stdout and "mandatory-department-and-classification-tags" in p.stdout, p.stdout[-3000:]
    assert "mandatory" in p.stdout and "classification" in p.stdout
