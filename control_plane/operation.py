"""Operations as domains declare them: the parameter building blocks, the declaration, and one call.

Each domain lists its operations in ``<domain>/ops.py`` (``OPERATIONS``); the composition root
(``control_plane.wiring``) hands them to the gate. The gate parses the target and parameters with
the declared model (unknown keys refused, nothing coerced), asks the validator at submission,
before anyone approves, shows the approver the preview, and runs the handler once approved.
This module imports no domain and no part of the gate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from control_plane.errors import GateError

if TYPE_CHECKING:
    from control_plane.context import Context


class InvalidRequest(GateError):
    """A request's target or parameters do not parse into the operation's model."""

    http_status = 422
    exit_code = 2


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


ANY_T = r"^[A-Za-z0-9_.:@*,/+-]{0,512}$"
MONTH_T = r"^\d{4}-(0[1-9]|1[0-2])$"
ALERT_T = r"^[A-Za-z0-9_.:-]{1,256}$"
HOSTS_T = r"^[a-z0-9_][a-z0-9_.-]{0,62}(,[a-z0-9_][a-z0-9_.-]{0,62}){0,63}$"
SERVICES_T = r"^(all|[a-z_]+(,[a-z_]+)*)$"
JOB_T = r"^[a-z][a-z0-9_.-]{0,63}$"
USER_T = r"^[a-z][a-z0-9_.-]{0,31}$"
STACK_T = r"^[a-z][a-z0-9-]{0,63}$"
OP_ID_T = r"^op-\d{8}-[0-9a-f]{8}$"

# what each target pattern means, for the error a person reads
TARGETS = {
    MONTH_T: "a month is YYYY-MM (for example 2026-10)", HOSTS_T: "host or group names from the inventory, comma-separated",
    USER_T: "a user name (lower-case letters, digits, '.', '_', '-')", STACK_T: "a stack name from deploy.stacks",
    OP_ID_T: "an operation id such as op-20261202-1a2b3c4d", JOB_T: "a job id (govctl jobs list)", SERVICES_T: "all, or service names",
}


@dataclass(frozen=True)
class Call:
    """One request as a validator, preview or handler sees it: parsed, attributed, with its origin."""

    ctx: Context
    target: str
    params: dict[str, Any]
    by: str  # the authenticated requester, never taken from the request itself
    op_id: str = ""
    approvers: tuple[str, ...] = ()
    origin: Mapping[str, str] = field(default_factory=dict)  # e.g. {"alert": "<id>"} for a SOC response
    progress: Callable[..., None] | None = None  # an engine-step callback the caller passed


@dataclass(frozen=True)
class Operation:
    """A declared operation: what it is called, what it takes, and what it does."""

    name: str
    target: str  # a regular expression the whole target must match
    target_help: str  # what a valid target is, for the error a person reads
    run: Callable[[Call], Any]  # a JSON-able result, or (result, secret shown once)
    params: type[Params] = NoParams
    validate: Callable[[Call], dict[str, Any] | None] | None = None  # may return normalised params
    preview: Callable[[Call], Any] | None = None
    description: str = ""

    def parse(self, target: Any, params: Any) -> dict[str, Any]:
        """The parsed, normalised parameters, or InvalidRequest naming the bad field."""
        if not isinstance(target, str) or re.fullmatch(self.target, target) is None or "\n" in target:
            raise InvalidRequest(f"{self.name}: target {target!r} is not valid: {self.target_help}", hint="fix the target and submit again")
        if not isinstance(params, dict):
            raise InvalidRequest(f"{self.name}: params must be a mapping of names to values")
        try:
            parsed = self.params.model_validate(params)
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(x) for x in e.get("loc", ())) or "params"
            raise InvalidRequest(f"{self.name}: params.{where}: {e['msg']} (got {str(e.get('input'))[:80]!r})",
                                 hint=f"{self.params.__name__} takes: {', '.join(self.params.model_fields) or 'no parameters'}") from None  # fmt: skip
        return parsed.model_dump(mode="json")


def index(*groups: tuple[Operation, ...]) -> dict[str, Operation]:
    """One mapping of every declared operation; a name declared twice is a programming error."""
    out: dict[str, Operation] = {}
    for ops in groups:
        for op in ops:
            if op.name in out:
                raise ValueError(f"operation {op.name} declared twice")
            out[op.name] = op
    return out


# -- who asks, and what ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """Who is asking: a user with roles, from a source address ('local' for the host's own CLI)."""

    name: str
    roles: tuple[str, ...]
    source: str
    via: str  # token | peer | system
    token_id: str | None = None


@dataclass(frozen=True)
class OperationRequest:
    """What is asked for."""

    operation: str
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    break_glass: bool = False
    origin: dict[str, str] | None = None  # set by the control plane's engines only (a SOC response: {"alert": id})


SYSTEM_PREFIX = "system:"


def system_principal(name: str) -> Principal:
    """A reserved principal for one of the control plane's own engines (``system:scheduler``, ``system:soc-engine``)."""
    if not name.startswith(SYSTEM_PREFIX):
        raise ValueError(f"system principals are named {SYSTEM_PREFIX}<engine>, not {name!r}")
    return Principal(name, ("system",), "local", "system")
