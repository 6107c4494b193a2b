"""Ansible playbooks on the pools' hosts, as a gate operation (typed variables, check-mode preview)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from control_plane.operation import HOSTS_T, TARGETS, Call, Operation, Params
from control_plane.playbook import service as pb
from control_plane.playbook.params import parse

VarName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class PlaybookRun(Params):
    playbook: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    check: bool = False
    # checked against the playbook's own typed parameters (playbooks/parameters.yaml) by the validator
    extravars: dict[VarName, Any] = Field(default_factory=dict, max_length=16)


def _hosts(call: Call) -> list[str]:
    return [h for h in call.target.split(",") if h]


def _validate(call: Call) -> dict[str, Any]:
    name = call.params["playbook"]
    if not pb._NAME.match(name) or not (pb.PLAYBOOKS / f"{name}.yml").is_file():
        raise pb.PlaybookError(f"no playbook {name!r}", hint=f"available: {', '.join(pb.available())}")
    typed = parse(name, call.params.get("extravars") or {})  # the values first: nothing else looks at untyped input
    pb._check_request(call.ctx, name, _hosts(call))
    return {**call.params, "extravars": typed}


def _run(call: Call) -> dict[str, Any]:
    res = pb.run(call.ctx, call.params["playbook"], _hosts(call), check=bool(call.params.get("check")), extravars=call.params.get("extravars") or {})
    if res.status != "successful":
        raise pb.PlaybookError(f"playbook {res.playbook} {res.status} (rc {res.rc}) on {call.target}", hint=f"artifacts: {res.artifacts}")
    return res.as_dict()


def _preview(call: Call) -> Any:
    """The approver's preview: the same run in check mode, with diffs."""
    res = pb.run(call.ctx, call.params["playbook"], _hosts(call), check=True, extravars=call.params.get("extravars") or {})
    return {"check_mode": res.status, "changed": res.changed, "diffs": res.diffs[:50]}


OPERATIONS = (
    Operation("playbook.run", HOSTS_T, TARGETS[HOSTS_T], _run, PlaybookRun, validate=_validate, preview=_preview,
              description="run a playbook on hosts (check mode: a dry run)"),  # fmt: skip
)
