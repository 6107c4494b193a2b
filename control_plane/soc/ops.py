"""The SOC engine's operations: triage an alert, change a rule exception, apply the event retention."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from control_plane.gate.errors import ApprovalError
from control_plane.operation import ALERT_T, Call, Name, Operation, Params, Reason
from control_plane.soc import alerts
from control_plane.soc import exceptions as ex
from control_plane.soc.retention import apply as apply_retention


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


class Retention(Params):
    days: int = Field(ge=1, le=3650)


def _validate_alert_update(call: Call) -> None:
    """A break-glass alert and its review are closed by two different people."""
    if call.params["action"] == "close" and call.target.startswith(alerts.BREAK_GLASS_PREFIX):
        op_id = call.target.removeprefix(alerts.BREAK_GLASS_PREFIX)
        if call.ctx.gate.break_glass_reviewer(op_id) == call.by:
            raise ApprovalError(f"{call.by} closed the review of {op_id}; the break-glass alert needs a second person")


def _alert_update(call: Call) -> dict[str, Any]:
    _validate_alert_update(call)  # again at run time: the review may have been closed meanwhile
    p = call.params
    return alerts.update(call.ctx.es, call.target, actor=call.by, action=p["action"], assignee=p.get("assignee"),
                         verdict=p.get("verdict"), text=p.get("text"))  # fmt: skip


def _exception_change(call: Call) -> dict[str, Any]:
    p = call.params
    if p.get("action") == "revoke":
        return ex.revoke(call.ctx, call.target)
    return ex.add(call.ctx, rule=call.target, match=p.get("match") or {}, owner=p.get("owner") or call.by,
                  reason=p.get("reason", ""), days=float(p.get("days", 30)), by=call.by)  # fmt: skip


def _retention(call: Call) -> dict[str, Any]:
    gone = apply_retention(call.ctx.es, call.params["days"])
    return {"deleted": gone, "days": call.params["days"]}


OPERATIONS = (
    Operation("soc.alert.update", ALERT_T, "an alert id (govctl soc alerts list)", _alert_update, AlertUpdate,
              validate=_validate_alert_update, description="acknowledge, assign, note or close an alert"),  # fmt: skip
    Operation("soc.exception.change", ALERT_T, "a rule id, or an exception id to revoke", _exception_change, ExceptionChange,
              description="add or revoke a rule exception"),  # fmt: skip
    Operation("soc.retention.apply", r"^soc-events$", "soc-events", _retention, Retention,
              description="delete daily event indices older than the retention"),  # fmt: skip
)
