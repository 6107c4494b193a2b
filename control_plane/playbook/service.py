"""One small interface around ansible-runner: run a playbook, get status, rc, events and artifacts.

Every run gets a fresh private data directory under ``var/ansible/runs/<run id>`` (the project
directory, ``playbooks/``, is shared), so artifacts are kept per run and bounded by count. The
inventory and a strict known_hosts file come from the deployed stacks' outputs; a host outside
them is refused. Task results stream to the audit ledger as they happen.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.audit import steps
from control_plane.errors import GovctlError

from control_plane.playbook.params import PLAYBOOKS

if TYPE_CHECKING:
    from control_plane.context import Context

KEEP_RUNS = 200
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PlaybookError(GovctlError):
    """A playbook run could not be started or did not succeed."""

    http_status = 400
    exit_code = 1


@dataclass
class PlaybookRun:
    """The outcome of one run."""

    run_id: str
    playbook: str
    limit: list[str]
    check: bool
    status: str  # successful | failed | timeout | canceled
    rc: int
    stats: dict[str, Any]
    changed: dict[str, int]
    artifacts: str
    diffs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the gate's result and ``--json``."""
        return dict(self.__dict__)


def available() -> dict[str, str]:
    """Playbook names and the first line of their header comment."""
    out = {}
    for p in sorted(PLAYBOOKS.glob("*.yml")):
        first = next((ln[1:].strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), "")
        out[p.stem] = first
    return out


def inventory(rt: Context) -> dict[str, Any]:
    """Hosts of every deployed stack, grouped by stack, pool and tier, with their SSH host keys."""
    from control_plane.deploy.service import outputs, ssh_keypair, state_file

    key, _ = ssh_keypair(rt)
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for stack_name in rt.settings.deploy.stacks:
        if not state_file(rt, stack_name).exists():
            continue
        outs = outputs(rt, stack_name)
        for role in ("primary", "backup"):
            for hname, ip in (outs.get(f"{role}_hosts") or {}).items():
                tier = hname.split("-")[1]
                gateway = str(rt.settings.deploy.stacks[stack_name].get("local_gateway", "10.77.0.1/16")).split("/")[0]
                hosts[hname] = {"ansible_host": ip, "govctl_pool": role, "govctl_stack": stack_name, "govctl_gateway": gateway,
                                "govctl_host_key": (outs.get(f"{role}_host_keys") or {}).get(hname, "")}  # fmt: skip
                for g in (stack_name, role, f"{role}_{tier}"):
                    groups.setdefault(g, {"hosts": {}})["hosts"][hname] = {}
    return {"all": {"hosts": hosts, "children": groups,
                    "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                             "ansible_python_interpreter": "/usr/bin/python3"}}}  # fmt: skip


def _check_request(rt: Context, name: str, limit: list[str]) -> dict[str, Any]:
    if not _NAME.match(name) or not (PLAYBOOKS / f"{name}.yml").is_file():
        raise PlaybookError(f"no playbook {name!r}", hint=f"available: {', '.join(available())}")
    inv = inventory(rt)
    known = set(inv["all"]["hosts"]) | set(inv["all"]["children"]) | {"all"}
    if not limit:
        raise PlaybookError("say which hosts with --limit", hint=f"hosts and groups: {', '.join(sorted(known)) or 'none (deploy a stack first)'}")
    outside = [h for h in limit if h not in known]
    if outside:
        raise PlaybookError(f"host {outside[0]!r} is outside the inventory", hint=f"hosts and groups: {', '.join(sorted(known)) or 'none (deploy a stack first)'}")
    return inv


def _prune(runs: Path) -> None:
    dirs = sorted((d for d in runs.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for d in dirs[:-KEEP_RUNS]:
        shutil.rmtree(d, ignore_errors=True)


def run(rt: Context, name: str, limit: list[str], *, check: bool = False, extravars: dict[str, Any] | None = None,
        timeout: int = 900, cancel: threading.Event | None = None, actor: str = "ansible",
        internal_vars: dict[str, Any] | None = None) -> PlaybookRun:  # fmt: skip
    """Run a playbook on hosts of the inventory; task results go to the audit ledger.

    ``extravars`` are parsed into the playbook's declared types; ``internal_vars`` are values the
    control plane itself supplies (credentials, for instance), never taken from a request.
    """
    from control_plane.playbook.params import parse, write_extravars

    inv = _check_request(rt, name, limit)
    values = parse(name, extravars or {})  # typed again here: nothing untyped reaches Ansible, whoever calls
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    runs = rt.settings.var / "ansible" / "runs"
    pdd = runs / run_id
    (pdd / "env").mkdir(parents=True)
    # the values go in a 0600 file, tagged !unsafe (never templated), and never on a command line
    write_extravars(pdd / "env" / "extravars", {**values, **_control_plane_vars(rt, name), **(internal_vars or {})})
    home = pdd / "ansible-home"
    known_hosts = pdd / "known_hosts"
    known_hosts.write_text("".join(f"{h['ansible_host']} {h['govctl_host_key']}\n" for h in inv["all"]["hosts"].values() if h["govctl_host_key"]))
    envvars = {
        "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_REMOTE_TEMP": "/tmp/.govctl-ansible",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"), "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=no -o ControlPersist=no -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # ansible-playbook from our virtualenv (runner's binary= would switch it to raw mode and drop the playbook)
        "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }  # fmt: skip
    diffs: list[dict[str, Any]] = []
    import tempfile

    control_dir = tempfile.mkdtemp(prefix="gcp-")  # ssh control sockets must fit in 108 bytes, so not under var/
    envvars["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control_dir

    def on_event(ev: dict[str, Any]) -> bool:
        data = ev.get("event_data", {})
        kind = ev.get("event", "")
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") or (kind == "runner_on_skipped" and False):
            res = data.get("res", {}) or {}
            changed, failed = bool(res.get("changed")), kind != "runner_on_ok"
            if res.get("diff"):
                diffs.append({"host": data.get("host"), "task": data.get("task"), "diff": res["diff"]})
            if changed or failed or check:
                steps.record(rt.ledger, actor=actor, role="automation", operation="playbook.task", target=str(data.get("host")),
                             params={"playbook": name, "task": data.get("task")}, outcome="failed" if failed else ("changed" if changed else "ok"),
                             details={"run": run_id, "check": check, "msg": str(res.get("msg", ""))[:300]})  # fmt: skip
        return True

    kwargs = dict(
        private_data_dir=str(pdd), project_dir=str(PLAYBOOKS), playbook=f"{name}.yml", inventory=inv,
        limit=",".join(limit), envvars=envvars, cmdline="--check --diff" if check else "--diff",
        timeout=timeout, quiet=True, ident="artifacts",
    )  # fmt: skip
    try:
        status, rc, stats = _run_spawned(kwargs, on_event, cancel)
    finally:
        shutil.rmtree(control_dir, ignore_errors=True)
    _prune(runs)
    changed = {h: n for h, n in (stats.get("changed") or {}).items()}
    return PlaybookRun(run_id, name, limit, check, status, rc, stats, changed, str(pdd / "artifacts" / "artifacts"), diffs)


def _runner_child(kwargs: dict[str, Any], out: Any, cancel: Any) -> None:
    """In a freshly spawned interpreter (no gRPC threads, nothing forked from the control plane): run and report back."""
    import ansible_runner

    def on_event(ev: dict[str, Any]) -> bool:
        data = ev.get("event_data") or {}
        out.put(("event", {"event": ev.get("event", ""), "event_data": {k: data.get(k) for k in ("host", "task", "res")}}))
        return True

    try:
        r = ansible_runner.run(**kwargs, event_handler=on_event, cancel_callback=cancel.is_set)
        out.put(("done", (r.status, r.rc, r.stats or {})))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which records the run as failed
        out.put(("done", ("failed", -1, {"error": f"{type(exc).__name__}: {exc}"[:500]})))


def _run_spawned(kwargs: dict[str, Any], on_event: Any, cancel: threading.Event | None) -> tuple[str, int, dict[str, Any]]:
    """ansible-runner in a spawned process: a control plane that has run Pulumi (gRPC threads) must not fork Ansible.

    Task events stream back through a queue to ``on_event`` (the audit); ``cancel`` is passed on.
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    if cancel is not None and cancel.is_set():
        stop.set()
    child = ctx.Process(target=_runner_child, args=(kwargs, out, stop), name="govctl-ansible")
    child.start()
    result: tuple[str, int, dict[str, Any]] | None = None
    try:
        while result is None:
            if cancel is not None and cancel.is_set():
                stop.set()
            try:
                kind, payload = out.get(timeout=0.2)
            except queue.Empty:
                if not child.is_alive() and out.empty():
                    result = ("failed", child.exitcode if child.exitcode is not None else -1, {"error": "the ansible-runner process died"})
                continue
            if kind == "event":
                on_event(payload)
            else:
                result = payload
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    return result


def _control_plane_vars(rt: Context, name: str) -> dict[str, Any]:
    """Values only the control plane supplies: log shipping gets the shipper's own credentials and the CA (never from a request)."""
    if name != "log_shipping":
        return {}
    from control_plane.services.es_security import SHIPPER_USER, load_credentials

    return {"es_user": SHIPPER_USER, "es_password": load_credentials(rt.settings.es_credentials_path())[SHIPPER_USER],
            "es_ca_pem": rt.settings.es_ca_path().read_text() if rt.settings.es_ca_path().exists() else ""}  # fmt: skip


def kill_group(pid: int) -> None:
    """Kill a run's whole process group (ansible-playbook and its ssh children)."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
