"""Strict parameter models: every operation's target and parameters are parsed before risk is computed.

A request whose parameters are not exactly what the operation takes (an unknown key, a string
where a boolean belongs, a month with a trailing newline) is refused with the field that was
wrong, before anyone is asked to approve and before any rule compares values. What the gate
stores, hashes, shows the approver and hands to the handler is the parsed, normalised form.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from control_plane.gate.errors import GateError


class InvalidRequest(GateError):
    """A request's target or parameters do not parse into the operation's model."""

    http_status = 422


class Params(BaseModel):
    """Base of every operation's parameters: unknown keys are refused, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Text200 = Annotated[str, StringConstraints(max_length=200)]
Reason = Annotated[str, StringConstraints(max_length=2000)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/@+-]{0,1023}$")]
# a relative path inside something: no leading "/", no "." or ".." segment, no empty segment
RelPath = Annotated[str, StringConstraints(pattern=r"^(?:[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*|\.[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*|\.\.[A-Za-z0-9._@+-]+)(?:/(?:[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*|\.[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*|\.\.[A-Za-z0-9._@+-]+))*$", max_length=1024)]


class NoParams(Params):
    """An operation that takes no parameters."""


class ServicesUp(Params):
    rollback: bool = False


class TokenCreate(Params):
    ttl_days: float = Field(default=30, gt=0, le=366)
    description: Text200 = ""


class TokenRevoke(Params):
    token_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]


class UserCreate(Params):
    roles: list[Name] = Field(min_length=1, max_length=5)
    department: Annotated[str, StringConstraints(max_length=64)] = ""


class UserChange(Params):
    disabled: bool


class RoleChange(Params):
    roles: list[Name] = Field(max_length=5)


class ReviewClose(Params):
    verdict: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class PlaybookRun(Params):
    playbook: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    check: bool = False
    # checked against the playbook's own typed parameters (playbooks/parameters.yaml) by its validator
    extravars: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], Any] = Field(default_factory=dict, max_length=16)


class AlertUpdate(Params):
    action: Literal["ack", "assign", "close", "note"]
    assignee: Name | None = None
    verdict: Literal["true_positive", "false_positive", "benign"] | None = None
    text: Annotated[str, StringConstraints(max_length=4000)] | None = None


class ExceptionChange(Params):
    action: Literal["add", "revoke"]
    match: dict[Annotated[str, StringConstraints(pattern=r"^[a-z@][a-z0-9_.@]{0,127}$")], Annotated[str, StringConstraints(max_length=512)]] = Field(default_factory=dict, max_length=16)
    owner: Name | None = None
    reason: Reason = ""
    days: float = Field(default=30, gt=0, le=180)


class ReportBuild(Params):
    correction: bool = False
    reason: Reason = ""


class ReportSubmit(Params):
    revision: int | None = Field(default=None, ge=1)


class Restore(Params):
    kind: Literal["files", "postgres"]
    target: AbsPath
    include: list[RelPath] = Field(default_factory=list, max_length=64)
    to: Annotated[str, StringConstraints(pattern=r"^(latest|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))$")] = "latest"


class DryRun(Params):
    dry_run: bool = False


class Drill(Params):
    cleanup: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    canary_s: float = Field(default=5.0, gt=0, le=600)


class KeyRotate(Params):
    pass


_ANY = r"^[A-Za-z0-9_.:@*,/+-]{0,512}$"
_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
_ALERT = r"^[A-Za-z0-9_.:-]{1,256}$"
_HOSTS = r"^[a-z0-9_][a-z0-9_.-]{0,62}(,[a-z0-9_][a-z0-9_.-]{0,62}){0,63}$"
_SERVICES = r"^(all|[a-z_]+(,[a-z_]+)*)$"
_JOB = r"^[a-z][a-z0-9_.-]{0,63}$"
_USER = r"^[a-z][a-z0-9_.-]{0,31}$"
_STACK = r"^[a-z][a-z0-9-]{0,63}$"
_OP_ID = r"^op-\d{8}-[0-9a-f]{8}$"

# what each target pattern means, for the error a person reads
TARGETS = {
    _MONTH: "a month is YYYY-MM (for example 2026-10)", _HOSTS: "host or group names from the inventory, comma-separated",
    _USER: "a user name (lower-case letters, digits, '.', '_', '-')", _STACK: "a stack name from deploy.stacks",
    _OP_ID: "an operation id such as op-20261202-1a2b3c4d", _JOB: "a job id (govctl jobs list)", _SERVICES: "all, or service names",
}

# operation -> (target pattern, parameter model)
OPERATIONS: dict[str, tuple[str, type[Params]]] = {
    "services.up": (_SERVICES, ServicesUp),
    "services.down": (_SERVICES, NoParams),
    "jobs.run": (_JOB, NoParams),
    "jobs.pause": (_JOB, NoParams),
    "jobs.resume": (_JOB, NoParams),
    "audit.checkpoint": (r"^audit$", NoParams),
    "keys.rotate": (r"^platform$", KeyRotate),
    "iam.user.create": (_USER, UserCreate),
    "iam.user.change": (_USER, UserChange),
    "iam.role.change": (_USER, RoleChange),
    "iam.token.create": (_USER, TokenCreate),
    "iam.token.revoke": (_USER, TokenRevoke),
    "gate.review.close": (_OP_ID, ReviewClose),
    "deploy.preview": (_STACK, NoParams),
    "deploy.up": (_STACK, NoParams),
    "deploy.destroy": (_STACK, NoParams),
    "playbook.run": (_HOSTS, PlaybookRun),
    "soc.alert.update": (_ALERT, AlertUpdate),
    "soc.exception.change": (_ALERT, ExceptionChange),
    "report.build": (_MONTH, ReportBuild),
    "report.submit": (_MONTH, ReportSubmit),
    "backup.run": (r"^[a-z][a-z0-9_-]{0,63}$", NoParams),
    "dr.restore": (r"^[A-Za-z0-9_.-]{1,64}$", Restore),
    "backup.delete": (r"^(\*|[a-z][a-z0-9_-]{0,63})$", DryRun),
    "backup.prune": (r"^repository$", DryRun),
    "dr.drill": (_STACK, Drill),
}


def _where(err: dict[str, Any]) -> str:
    return ".".join(str(x) for x in err.get("loc", ())) or "params"


def parse(operation: str, target: str, params: Any) -> dict[str, Any]:
    """The parsed, normalised parameters of a request, or InvalidRequest naming the bad field."""
    spec = OPERATIONS.get(operation)
    if spec is None:
        raise InvalidRequest(f"{operation} has no parameter model", hint="every operation must declare one in control_plane/gate/params.py")
    pattern, model = spec
    if not isinstance(target, str) or re.fullmatch(pattern, target) is None or "\n" in target:
        what = TARGETS.get(pattern, f"it must match {pattern}")
        raise InvalidRequest(f"{operation}: target {target!r} is not valid: {what}", hint="fix the target and submit again")
    if not isinstance(params, dict):
        raise InvalidRequest(f"{operation}: params must be a mapping of names to values")
    try:
        parsed = model.model_validate(params)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise InvalidRequest(f"{operation}: params.{_where(e)}: {e['msg']} (got {str(e.get('input'))[:80]!r})",
                             hint=f"{model.__name__} takes: {', '.join(model.model_fields) or 'no parameters'}") from None  # fmt: skip
    return parsed.model_dump(mode="json")
