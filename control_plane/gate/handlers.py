"""What each operation does once the gate lets it through.

A handler takes the runtime, the target and the parameters and returns a JSON-able result
(and, for new tokens only, a secret shown once). Operations whose domain has not landed yet
have no handler; the gate refuses them before asking anyone to approve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, str, dict[str, Any]], "dict[str, Any] | tuple[dict[str, Any], str]"]
HANDLERS: dict[str, Handler] = {}
PREVIEWS: dict[str, Callable[[Any, str, dict[str, Any]], Any]] = {}
# Checked at submission, before anyone is asked to approve: bad input is refused (and audited) early.
# A validator may return the normalised parameters (the gate stores and hashes those).
VALIDATORS: dict[str, Callable[[Any, str, dict[str, Any]], "dict[str, Any] | None"]] = {}


def handler(operation: str) -> Callable[[Handler], Handler]:
    """Register the function that carries out ``operation``."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[operation] = fn
        return fn

    return deco


@handler("services.up")
def _services_up(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in target.split(",") if n and n != "all"] or None
    started: list[str] = []
    try:
        rows = rt.supervisor.up(names, on_event=lambda n, m: started.append(n) if m.startswith("starting") else None)
    except Exception:
        if params.get("rollback"):
            rt.supervisor.down(started)  # leave nothing half-started behind
        raise
    return {"started": started, "status": [r.as_dict() for r in rows]}


@handler("services.down")
def _services_down(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in target.split(",") if n and n != "all"] or None
    return {"stopped": rt.supervisor.down(names)}


@handler("jobs.run")
def _jobs_run(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.scheduler import run_job

    res = run_job(rt, target, trigger="manual")
    if res.status == "failed":
        raise RuntimeError(f"job {target} failed: {res.detail}")
    return res.as_dict()


@handler("jobs.pause")
def _jobs_pause(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.scheduler import set_paused

    return set_paused(rt, target, True)


@handler("jobs.resume")
def _jobs_resume(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.scheduler import set_paused

    return set_paused(rt, target, False)


@handler("audit.checkpoint")
def _audit_checkpoint(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    cp = rt.ledger.checkpoint()
    return {"checkpoint": cp["seq"] if cp else None}


@handler("iam.user.create")
def _user_create(rt: Any, target: str, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from control_plane.gate import iam

    user, code = iam.create_user(rt, target, roles=params["roles"], department=params.get("department", ""))
    return {"user": user, "enrolment": f"hand the code to {target} only; it works once, for {iam.ENROL_TTL_H} hours"}, code


@handler("iam.user.change")
def _user_change(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    """Enable or disable a user; roles change only through iam.role.change."""
    from control_plane.gate import iam

    if iam.get_user(rt, target) is None:
        raise iam.NotFound(f"no user {target!r}", hint="create it with govctl iam user add")
    return iam.change_user(rt, target, disabled=params["disabled"])


@handler("iam.role.change")
def _role_change(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.gate import iam

    if iam.get_user(rt, target) is None:
        raise iam.NotFound(f"no user {target!r}", hint="create it with govctl iam user add")
    return iam.change_user(rt, target, roles=params["roles"])


def _validate_user_create(rt: Any, target: str, params: dict[str, Any]) -> None:
    from control_plane.gate import iam

    iam.check_name(target)
    iam.check_roles(rt, params["roles"])


def _validate_role_change(rt: Any, target: str, params: dict[str, Any]) -> None:
    from control_plane.gate import iam

    iam.check_roles(rt, params["roles"])


VALIDATORS["iam.user.create"] = _validate_user_create
VALIDATORS["iam.role.change"] = _validate_role_change


@handler("keys.rotate")
def _keys_rotate(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    """A new platform key; the old one signs the hand-over, which the ledger records and checkpoints."""
    from control_plane.crypto import SM2PrivateKey
    from control_plane.crypto.keys import install_platform_key

    new = SM2PrivateKey.generate()
    out = rt.ledger.rotate(new, actor=params["_by"])
    install_platform_key(rt.settings.key_dir, new, rt.key_passphrase(), rt.settings.crypto.kdf_iterations)
    rt.__dict__["signer"] = new
    return out


@handler("iam.token.create")
def _token_create(rt: Any, target: str, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from control_plane.gate import iam

    token_id, secret, expires = iam.create_token(rt, target, ttl_days=int(params.get("ttl_days", 30)), description=params.get("description", ""))
    return {"token_id": token_id, "user": target, "expires": expires}, secret


@handler("iam.token.revoke")
def _token_revoke(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.gate import iam

    return iam.revoke_token(rt, params["token_id"], owner=target)


@handler("gate.review.close")
def _review_close(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.gate import service

    return service.close_review(rt, target, reviewer=params["_by"], verdict=params["verdict"])


def _progress(rt: Any) -> Any:
    return getattr(rt, "deploy_progress", None)


@handler("deploy.preview")
def _deploy_preview(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.deploy import service as deploy

    return deploy.preview(rt, target)


@handler("deploy.up")
def _deploy_up(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.deploy import service as deploy

    from control_plane.monitoring import refresh

    out = deploy.up(rt, target, _progress(rt))
    out["monitoring"] = refresh(rt)  # the new hosts' node_exporters are scraped from now on
    return out


@handler("deploy.destroy")
def _deploy_destroy(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.deploy import service as deploy

    from control_plane.monitoring import refresh

    out = deploy.destroy(rt, target, _progress(rt))
    out["monitoring"] = refresh(rt)
    return out


def _preview_up(rt: Any, target: str, params: dict[str, Any]) -> Any:
    from control_plane.deploy import service as deploy

    return deploy.preview(rt, target)


def _preview_destroy(rt: Any, target: str, params: dict[str, Any]) -> Any:
    from control_plane.deploy import service as deploy

    return deploy.preview_destroy(rt, target)


PREVIEWS["deploy.up"] = _preview_up
PREVIEWS["deploy.destroy"] = _preview_destroy


@handler("playbook.run")
def _playbook_run(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.playbook import service as pb

    res = pb.run(rt, params["playbook"], target.split(","), check=bool(params.get("check")), extravars=params.get("extravars") or {})
    out = res.as_dict()
    if res.status != "successful":
        raise pb.PlaybookError(f"playbook {res.playbook} {res.status} (rc {res.rc}) on {target}", hint=f"artifacts: {res.artifacts}")
    return out


def _preview_playbook(rt: Any, target: str, params: dict[str, Any]) -> Any:
    """The approver's preview: the same run in check mode, with diffs."""
    from control_plane.playbook import service as pb

    res = pb.run(rt, params["playbook"], target.split(","), check=True, extravars=params.get("extravars") or {})
    return {"check_mode": res.status, "changed": res.changed, "diffs": res.diffs[:50]}


PREVIEWS["playbook.run"] = _preview_playbook


def _validate_playbook(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.playbook import service as pb

    from control_plane.playbook.params import parse

    if not pb._NAME.match(params["playbook"]) or not (pb.PLAYBOOKS / f"{params['playbook']}.yml").is_file():
        raise pb.PlaybookError(f"no playbook {params['playbook']!r}", hint=f"available: {', '.join(pb.available())}")
    typed = parse(params["playbook"], params.get("extravars") or {})  # the values first: nothing else looks at untyped input
    pb._check_request(rt, params["playbook"], [h for h in target.split(",") if h])
    return {**params, "extravars": typed}


def _validate_stack(rt: Any, target: str, params: dict[str, Any]) -> None:
    from control_plane.deploy.service import stack_spec

    stack_spec(rt, target)


VALIDATORS["playbook.run"] = _validate_playbook
for _op in ("deploy.preview", "deploy.up", "deploy.destroy"):
    VALIDATORS[_op] = _validate_stack


def _validate_alert_update(rt: Any, target: str, params: dict[str, Any]) -> None:
    """A break-glass alert and its review are closed by two different people."""
    from control_plane.gate.errors import ApprovalError
    from control_plane.gate.service import break_glass_reviewer

    if params["action"] == "close" and target.startswith("gate-break-glass-"):
        op_id = target.removeprefix("gate-break-glass-")
        if break_glass_reviewer(rt, op_id) == params["_by"]:
            raise ApprovalError(f"{params['_by']} closed the review of {op_id}; the break-glass alert needs a second person")


def _validate_review_close(rt: Any, target: str, params: dict[str, Any]) -> None:
    from control_plane.gate.errors import ApprovalError
    from control_plane.gate.service import break_glass_alert_closer

    if break_glass_alert_closer(rt, target) == params["_by"]:
        raise ApprovalError(f"{params['_by']} closed the break-glass alert of {target}; the review needs a second person",
                            hint="another security administrator must close the review")  # fmt: skip


VALIDATORS["soc.alert.update"] = _validate_alert_update
VALIDATORS["gate.review.close"] = _validate_review_close


@handler("soc.alert.update")
def _alert_update(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.soc import alerts

    _validate_alert_update(rt, target, params)  # again at run time: the review may have been closed meanwhile
    return alerts.update(rt.es, target, actor=params["_by"], action=params["action"], assignee=params.get("assignee"),
                         verdict=params.get("verdict"), text=params.get("text"))  # fmt: skip


@handler("soc.exception.change")
def _exception_change(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.soc import exceptions as ex

    if params.get("action") == "revoke":
        return ex.revoke(rt, target)
    return ex.add(rt, rule=target, match=params.get("match") or {}, owner=params.get("owner") or params["_by"],
                  reason=params.get("reason", ""), days=float(params.get("days", 30)), by=params["_by"])  # fmt: skip


@handler("report.build")
def _report_build(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.report import store

    reason = params.get("reason") if params.get("correction") else None
    b = store.build(rt, target, actor=params["_by"], reason=reason, signoff=params.get("_approvers") or [])
    if not store.load(b).get("final"):
        return b.as_dict() | {"provisional": True}
    return b.as_dict()


@handler("report.submit")
def _report_submit(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from control_plane.report import deliver, store

    b = store.get(rt, target, params.get("revision"))
    if not store.load(b).get("final"):
        raise store.ReportError(f"{target} r{b.revision} was built before the month ended (provisional); it is not submitted",
                                hint=f"after the month ends: govctl report build --month {target}, then submit")  # fmt: skip
    d = deliver.enqueue(rt, b)
    if d["status"] == "pending":
        d = deliver.attempt(rt, d)
    return {k: v for k, v in d.items() if k != "receipt"} | {"receipt_id": (d["receipt"] or {}).get("receipt", {}).get("receipt_id")}


def _validate_report(rt: Any, target: str, params: dict[str, Any]) -> None:
    from control_plane.report.build import month_window
    from control_plane.report.store import ReportError, latest

    month_window(target)  # YYYY-MM or a clear error
    prior = latest(rt, target)
    from datetime import datetime, timezone

    from control_plane.report.store import load

    provisional_done = prior is not None and not load(prior).get("final", True) and month_window(target)[1] <= datetime.now(timezone.utc)
    if prior is not None and not params.get("correction") and not provisional_done:
        from control_plane.report.store import ReportExists

        raise ReportExists(f"{target} is already built (revision {prior.revision}, {prior.created[:19]}); reports are immutable",
                           hint=f"show it: govctl report show --month {target}; a correction is a new revision: --correct 'why' (needs an approver)")  # fmt: skip
    if params.get("correction"):
        if not str(params.get("reason") or "").strip():
            raise ReportError("a correction needs a reason", hint="--correct 'what was wrong and what changed'")
        if prior is None:
            raise ReportError(f"{target} has no revision to correct", hint="build it first without --correct")


VALIDATORS["report.build"] = _validate_report


@handler("backup.run")
def _backup_run(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from dr.service import backup_source

    return backup_source(rt, target)


@handler("dr.restore")
def _dr_restore(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from dr.service import open_repo

    repo = open_repo(rt, create=False)
    if params.get("kind") == "postgres":
        from dr.pg import restore_pg

        return restore_pg(rt, repo, target, Path(params["target"]), to=params.get("to") or "latest")
    from dr.files import restore

    return restore(repo, target, Path(params["target"]), include=params.get("include") or None)


@handler("backup.delete")
def _backup_forget(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from dr.retention import forget
    from dr.service import open_repo

    return forget(open_repo(rt, create=False), rt.settings.dr.retention, source=None if target in ("", "*") else target, dry_run=bool(params.get("dry_run")))


@handler("backup.prune")
def _backup_prune(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from dr.retention import prune
    from dr.service import open_repo

    return prune(open_repo(rt, create=False), dry_run=bool(params.get("dry_run")))


def _validate_restore(rt: Any, target: str, params: dict[str, Any]) -> None:
    from pathlib import Path

    from dr.repo import RepoError

    dest = params.get("target")
    if not dest:
        raise RepoError("say where to restore: --target PATH")
    p = Path(dest)
    if p.is_symlink():
        raise RepoError(f"restore target {p} is a symbolic link", hint="give a new directory")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise RepoError(f"restore target {p} is not empty", hint="give an empty or new directory; restores never write into existing trees")


def _validate_backup(rt: Any, target: str, params: dict[str, Any]) -> None:
    from dr.service import source

    source(rt, target)


VALIDATORS["dr.restore"] = _validate_restore
VALIDATORS["backup.run"] = _validate_backup


@handler("dr.drill")
def _dr_drill(rt: Any, target: str, params: dict[str, Any]) -> dict[str, Any]:
    from dr import drill

    if params.get("cleanup"):
        return drill.cleanup(rt, params["cleanup"], by=params["_by"])
    return drill.run(rt, stack=target, canary_s=float(params.get("canary_s", 5.0)), by=params["_by"])
