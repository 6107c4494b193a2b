"""The bastion's operations: people's keys, grants, locks, ending sessions, a paused command's release, host credentials."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from control_plane import clock
from control_plane.bastion import store
from control_plane.operation import USER_T, Call, Operation, Params, Reason

HOST_ACCOUNT_T = r"^[a-z][a-z0-9-]{0,62}:[a-z_][a-z0-9_-]{0,31}$"
SESSION_T = r"^s-\d{8}-[0-9a-f]{10}$"
GRANT_T = r"^g-[0-9a-f]{8}$"
HOST_T = r"^[a-z][a-z0-9-]{0,62}$"
HostPattern = Annotated[str, StringConstraints(pattern=r"^(\*|pool:(primary|backup)|stack:[a-z][a-z0-9-]{0,63}|[a-z0-9*?][a-z0-9*?-]{0,62})$")]
Account = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]


class KeyAdd(Params):
    public_key: Annotated[str, StringConstraints(min_length=20, max_length=16384)]


class KeyRemove(Params):
    fingerprint: Annotated[str, StringConstraints(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")]


class GrantAdd(Params):
    hosts: list[HostPattern] = Field(min_length=1, max_length=64)
    account: Account = "root"
    valid_from: str | None = None
    hours: float = Field(default=8, gt=0, le=24 * 366)
    reason: Reason = ""

    @field_validator("valid_from")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        return clock.normalize(v) if v else v


class Lock(Params):
    reason: Reason = ""


class Command(Params):
    command: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    session: Annotated[str, StringConstraints(pattern=SESSION_T)]
    kind: Annotated[str, StringConstraints(pattern=r"^(shell|exec|sftp)$")] = "shell"


def _key_add(call: Call) -> dict[str, Any]:
    return store.add_key(call.ctx, call.target, call.params["public_key"], call.op_id)


def _validate_key(call: Call) -> None:
    store.parse_public_key(call.params["public_key"])  # refused at submission, before anyone approves


def _key_remove(call: Call) -> dict[str, Any]:
    return store.remove_key(call.ctx, call.params["fingerprint"], user=call.target)


def _grant_validate(call: Call) -> None:
    from control_plane.gate import iam

    if iam.get_user(call.ctx, call.target) is None:
        raise store.BastionError(f"no user {call.target!r}", hint="create the person first: govctl iam user add")
    if call.target == call.by:
        raise store.BastionError("nobody grants themself access to hosts", hint="ask a security administrator")


def _grant_preview(call: Call) -> dict[str, Any]:
    """Which deployed hosts the grant covers, for the approver."""
    covered = [a.name for a in store.assets(call.ctx).values() if any(store._covers(p, a) for p in call.params["hosts"])]
    return {"user": call.target, "account": call.params["account"], "hosts_now": sorted(covered), "hours": call.params["hours"]}


def _grant_add(call: Call) -> dict[str, Any]:
    p = call.params
    start = p.get("valid_from") or clock.now_iso()
    end = clock.iso(clock.parse(start) + __import__("datetime").timedelta(hours=p["hours"]))
    return store.add_grant(call.ctx, call.target, p["hosts"], p["account"], start, end, p.get("reason", ""), call.op_id)


def _grant_revoke(call: Call) -> dict[str, Any]:
    return store.revoke_grant(call.ctx, call.target)


def _lock(call: Call) -> dict[str, Any]:
    return store.lock(call.ctx, call.target, call.by, call.params.get("reason", ""))


def _unlock(call: Call) -> dict[str, Any]:
    return store.unlock(call.ctx, call.target)


def _kill(call: Call) -> dict[str, Any]:
    return store.request_kill(call.ctx, call.target)


def _command_validate(call: Call) -> None:
    s = store.get_session(call.ctx, call.params["session"])
    if s["user"] != call.by or f"{s['host']}:{s['account']}" != call.target:
        raise store.BastionError("a command approval is asked for from the requester's own session, on its host and account")


def _command(call: Call) -> dict[str, Any]:
    """Release the paused command: the bastion that asked sends exactly this line, once."""
    s = store.get_session(call.ctx, call.params["session"])
    if s["ended"] and call.params["kind"] != "sftp":
        raise store.BastionError(f"session {s['id']} ended at {s['ended']}: nothing to release")
    return {"released": call.params["command"], "session": s["id"], "approvers": list(call.approvers)}


def _rotate(call: Call) -> dict[str, Any]:
    from control_plane.deploy import hostkeys

    a = store.asset(call.ctx, call.target)
    return hostkeys.rotate(call.ctx, a.name, a.address, a.host_key, store.authorized_keys_file(call.ctx, a))


def _serve(call: Call) -> dict[str, Any]:
    """Authorise and record starting the gateway (the caller then listens)."""
    b = call.ctx.settings.bastion
    return {"listen": f"{b.host}:{b.port}"}


OPERATIONS = (
    Operation("bastion.serve", r"^gateway$", "gateway", _serve, description="start the bastion's SSH gateway in this process"),
    Operation("bastion.key.add", USER_T, "the person whose key it is", _key_add, KeyAdd, validate=_validate_key,
              description="register a person's SSH public key for the bastion"),  # fmt: skip
    Operation("bastion.key.remove", USER_T, "the person whose key it is", _key_remove, KeyRemove, description="remove a registered key"),
    Operation("bastion.grant.add", USER_T, "the person who gets access", _grant_add, GrantAdd, validate=_grant_validate, preview=_grant_preview,
              description="let a person open sessions as an account on hosts or pools, for a time"),  # fmt: skip
    Operation("bastion.grant.revoke", GRANT_T, "a grant id (govctl bastion grants)", _grant_revoke, description="end a grant now"),
    Operation("bastion.lock", USER_T, "the person to lock out", _lock, Lock, description="lock a person out; their sessions end within a second"),
    Operation("bastion.unlock", USER_T, "the locked person", _unlock, description="lift a bastion lock"),
    Operation("bastion.session.kill", SESSION_T, "a live session id (govctl bastion sessions)", _kill, description="end a live session"),
    Operation("bastion.command", HOST_ACCOUNT_T, "HOST:ACCOUNT of the session", _command, Command, validate=_command_validate,
              description="release a command a bastion session paused for approval (bound to the session, host, account and exact text)"),  # fmt: skip
    Operation("bastion.credentials.rotate", HOST_T, "a host name", _rotate, description="give a host a new bastion key (installed with the old one, checked, old removed)"),
)
