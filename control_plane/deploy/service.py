"""Drive the Pulumi engine through the Automation API.

State lives in a local file backend under ``var/pulumi/state`` and secrets use a passphrase
provider, so nothing leaves the machine. The program (``infra.program``) runs inline in this
process; the engine (the ``pulumi`` CLI that ``make`` builds) runs the dynamic providers through
the ``pulumi-resource-pulumi-python`` host in the virtualenv.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.errors import GovctlError
from control_plane.resources import project_root

if TYPE_CHECKING:
    from control_plane.context import Context

PROJECT = "govctl-pools"
PROJECT_DIR = project_root()
_engine_lock = threading.Lock()  # the inline program uses Pulumi's process-wide runtime state


class DeployError(GovctlError):
    """A deployment could not be planned or carried out."""

    http_status = 409
    exit_code = 1


def _cli_root() -> Path:
    venv_bin = Path(sys.prefix) / "bin"
    if (venv_bin / "pulumi").exists():
        return venv_bin.parent
    found = shutil.which("pulumi")
    if found:
        return Path(found).resolve().parent.parent
    raise DeployError("the Pulumi CLI is not installed", hint="run `make setup` (builds it from the Go module proxy)")


def stack_spec(rt: Context, name: str) -> dict[str, Any]:
    """The validated spec of a configured stack, with this machine's local paths, key and SSH key filled in."""
    from infra.pools import StackSpec

    stacks = rt.settings.deploy.stacks
    if name not in stacks:
        raise DeployError(f"unknown stack {name!r}", hint=f"configured stacks: {', '.join(sorted(stacks)) or 'none'} (deploy.stacks in govctl.yaml)")
    raw = dict(stacks[name])
    if raw.get("target", "local") == "local":
        raw.setdefault("local_root", str(rt.settings.var / "pools" / name))
        raw.setdefault("ssh_public_key", ssh_keypair(rt)[1])
    raw.setdefault("kek_hex", hmac.new(rt.signer.to_bytes(), f"pool-kek|{name}".encode(), "sha256").hexdigest()[:32])
    raw.setdefault("allocations", active_allocations(rt, name))
    try:
        spec = StackSpec.model_validate(raw)
        if spec.target == "local" and not spec.bastion_keys:  # each host's own bastion key, installed with the host
            from control_plane.deploy.hostkeys import keys_for
            from infra.pools import host_names

            spec = spec.model_copy(update={"bastion_keys": keys_for(rt, host_names(spec))})
        return spec.model_dump()
    except Exception as exc:  # pydantic.ValidationError: say which key is wrong
        raise DeployError(f"deploy.stacks.{name}: {exc}".replace("\n", " "), hint="fix the stack's configuration in govctl.yaml") from None


def active_allocations(rt: Context, stack_name: str) -> list[dict[str, Any]]:
    """The departments' approved hosts on a stack, as the program builds them."""
    from sqlalchemy import and_, select

    from control_plane.deploy.models import allocations as t

    with rt.engine.connect() as c:
        rows = c.execute(select(t).where(and_(t.c.stack == stack_name, t.c.status == "active")).order_by(t.c.pool, t.c.slot)).all()
    return [{"id": r.id, "department": r.department, "pool": r.pool, "slot": r.slot, "tier": r.tier, "vcpu": r.vcpu, "memory_gib": r.memory_gib,
             "storage_gib": r.storage_gib, "expires": r.expires} for r in rows]  # fmt: skip


def ssh_keypair(rt: Context) -> tuple[Path, str]:
    """The control plane's own SSH key for the pools' hosts (created on first use)."""
    import subprocess

    d = rt.settings.key_dir / "ssh"
    key = d / "id_ed25519"
    if not key.exists():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "govctl-control-plane", "-f", str(key)], check=True)
    return key, (d / "id_ed25519.pub").read_text().strip()


def _passphrase(rt: Context) -> str:
    return rt.key_passphrase()


def stack(rt: Context, name: str) -> Any:
    """Select (or create) the stack with its configuration set."""
    from pulumi import automation as auto

    from infra.program import program

    spec = stack_spec(rt, name)
    state = rt.settings.var / "pulumi" / "state"
    home = rt.settings.var / "pulumi" / "home"
    state.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PULUMI_CONFIG_PASSPHRASE": _passphrase(rt),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(PROJECT_DIR),
    }
    ws = auto.LocalWorkspaceOptions(
        pulumi_command=auto.PulumiCommand(root=str(_cli_root()), skip_version_check=True),
        pulumi_home=str(home),
        env_vars=env,
        project_settings=auto.ProjectSettings(name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=f"file://{state}")),
        secrets_provider="passphrase",
    )
    st = auto.create_or_select_stack(stack_name=name, project_name=PROJECT, program=program, opts=ws)
    st.set_config("govctl:spec", auto.ConfigValue(json.dumps(spec), secret=True))
    from control_plane.credentials import write_private
    from infra.program import cli_spec_path

    # the same settings for the standard CLI at the repository root (`pulumi preview --stack NAME`); 0600: the pools' key is in it
    write_private(cli_spec_path(rt.settings.var, name), json.dumps(spec).encode())
    return st


def _steps(events: list[Any]) -> list[dict[str, str]]:
    out = []
    for e in events:
        pre = getattr(e, "resource_pre_event", None)
        if pre is not None and pre.metadata.op.value != "same":
            m = pre.metadata
            out.append({"op": m.op.value, "type": m.type, "name": m.urn.rsplit("::", 1)[-1], "urn": m.urn})
    return out


def preview(rt: Context, name: str) -> dict[str, Any]:
    """What ``up`` would change: a summary by operation and each step (shown to approvers)."""
    with _engine_lock:
        st = stack(rt, name)
        events: list[Any] = []
        res = _run(rt, lambda: st.preview(on_event=events.append, diff=True))
    return {"stack": name, "change_summary": {k.value if hasattr(k, "value") else str(k): v for k, v in res.change_summary.items()},
            "steps": _steps(events)}  # fmt: skip


def preview_destroy(rt: Context, name: str) -> dict[str, Any]:
    """What ``destroy`` would delete: every resource in the stack's state."""
    with _engine_lock:
        st = stack(rt, name)
        dep = st.export_stack().deployment or {}
    res = [r for r in dep.get("resources", []) if not r["type"].startswith("pulumi:")]
    return {"stack": name, "change_summary": {"delete": len(res)},
            "steps": [{"op": "delete", "type": r["type"], "name": r["urn"].rsplit("::", 1)[-1], "urn": r["urn"]} for r in res]}  # fmt: skip


def _run(rt: Context, fn: Callable[[], Any]) -> Any:
    import time as _time

    from pulumi.automation import errors as auto_errors

    try:
        return fn()
    except auto_errors.CommandError as exc:
        text = str(exc)
        logs = rt.settings.var / "pulumi" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"engine-{_time.strftime('%Y%m%dT%H%M%S')}.log"
        log.write_text(text)
        import re

        diag = text.split("Diagnostics:", 1)[-1]
        exc_line = re.search(r"^\s*([A-Za-z_.]*(?:Error|Exception|Violation)): (.+)$", diag, re.M)
        noise = ("Resource monitor has terminated", "update failed", "preview failed", "Traceback")
        lines = [ln.strip() for ln in diag.splitlines() if "error:" in ln and not any(n in ln for n in noise)]
        first = (f"{exc_line.group(1)}: {exc_line.group(2)}" if exc_line else lines[0] if lines
                 else next((ln.strip() for ln in text.splitlines() if ln.strip()), "the engine failed"))  # fmt: skip
        raise DeployError(first[:500], hint=f"full engine output: {log}") from None


def _event_sink(rt: Context, name: str, on_step: Callable[[str, str, str], None] | None) -> Callable[[Any], None]:
    from control_plane.audit import steps

    def sink(e: Any) -> None:
        done = getattr(e, "res_outputs_event", None)
        failed = getattr(e, "res_op_failed_event", None)
        meta = (done or failed).metadata if (done or failed) else None
        if meta is None or meta.op.value == "same":
            return
        outcome = "succeeded" if done else "failed"
        steps.record(rt.ledger, actor="pulumi-engine", role="system", operation="deploy.step", target=meta.urn,
                     params={"stack": name, "op": meta.op.value, "type": meta.type}, outcome=outcome, details={"stack": name})  # fmt: skip
        if on_step:
            on_step(meta.op.value, meta.urn.rsplit("::", 1)[-1], outcome)

    return sink


def up(rt: Context, name: str, on_step: Callable[[str, str, str], None] | None = None) -> dict[str, Any]:
    """Create or update the stack; every resource step goes to the audit ledger as it happens."""
    with _engine_lock:
        st = stack(rt, name)
        res = _run(rt, lambda: st.up(on_event=_event_sink(rt, name, on_step)))
    return {"stack": name, "summary": res.summary.resource_changes, "outputs": {k: v.value for k, v in res.outputs.items() if not v.secret}}


def destroy(rt: Context, name: str, on_step: Callable[[str, str, str], None] | None = None) -> dict[str, Any]:
    """Delete every resource of the stack (the stack's history is kept)."""
    with _engine_lock:
        st = stack(rt, name)
        res = _run(rt, lambda: st.destroy(on_event=_event_sink(rt, name, on_step)))
    return {"stack": name, "summary": res.summary.resource_changes}


def state_file(rt: Context, name: str) -> Path:
    """The stack's checkpoint in the local file backend."""
    return rt.settings.var / "pulumi" / "state" / ".pulumi" / "stacks" / PROJECT / f"{name}.json"


def outputs(rt: Context, name: str) -> dict[str, Any]:
    """The stack's current outputs (hosts, buckets, zones), read from the backend's checkpoint without the CLI."""
    path = state_file(rt, name)
    if not path.exists():
        return {}
    try:
        resources = json.loads(path.read_text())["checkpoint"]["latest"].get("resources") or []
        root = next((r for r in resources if r["type"] == "pulumi:pulumi:Stack"), None)
        outs = (root or {}).get("outputs") or {}
        return {k: v for k, v in outs.items() if not (isinstance(v, dict) and "4dabf18193072939515e22adb298388d" in v)}
    except (KeyError, ValueError, TypeError):
        with _engine_lock:  # an unexpected checkpoint format: ask the engine
            return {k: v.value for k, v in stack(rt, name).outputs().items() if not v.secret}
