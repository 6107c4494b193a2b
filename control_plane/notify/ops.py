"""The notification operations: one's own subscription, acknowledging a message."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from control_plane.notify import service
from control_plane.operation import USER_T, TARGETS, Call, Operation, Params


class Subscription(Params):
    kinds: list[Literal["alert", "approval", "break_glass", "rpo", "job", "delivery", "escalation"]] = Field(default_factory=list, max_length=7)
    email: Annotated[str, StringConstraints(max_length=254)] = ""


def _subscribe(call: Call) -> dict[str, Any]:
    return service.set_subscription(call.ctx, call.target, list(call.params.get("kinds", [])), call.params.get("email", ""))


def _ack(call: Call) -> dict[str, Any]:
    return service.ack(call.ctx, call.target, call.by)


OPERATIONS = (
    Operation("notify.subscription.set", USER_T, TARGETS[USER_T], _subscribe, Subscription, description="one's own notification kinds and e-mail"),
    Operation("notify.ack", r"^[a-z_]{1,16}:[A-Za-z0-9:._-]{1,72}$", "a message id (the 通知 page)", _ack,
              description="acknowledge a notification (no escalation)"),  # fmt: skip
)
