"""The gate's own operations: people, roles, tokens, and closing break-glass reviews."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from control_plane.gate import iam
from control_plane.gate.errors import ApprovalError
from control_plane.operation import OP_ID_T, NoParams, TARGETS, USER_T, Call, Name, Operation, Params, Text200


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


def _user_create(call: Call) -> tuple[dict[str, Any], str]:
    user, code = iam.create_user(call.ctx, call.target, roles=call.params["roles"], department=call.params.get("department", ""))
    return {"user": user, "enrolment": f"hand the code to {call.target} only; it works once, for {iam.ENROL_TTL_H} hours"}, code


def _existing(call: Call) -> None:
    if iam.get_user(call.ctx, call.target) is None:
        raise iam.NotFound(f"no user {call.target!r}", hint="create it with govctl iam user add")


def _user_change(call: Call) -> dict[str, Any]:
    """Enable or disable a user; roles change only through iam.role.change."""
    _existing(call)
    return iam.change_user(call.ctx, call.target, disabled=call.params["disabled"])


def _role_change(call: Call) -> dict[str, Any]:
    _existing(call)
    return iam.change_user(call.ctx, call.target, roles=call.params["roles"])


def _validate_user_create(call: Call) -> None:
    iam.check_name(call.target)
    iam.check_roles(call.ctx, call.params["roles"])


def _validate_role_change(call: Call) -> None:
    iam.check_roles(call.ctx, call.params["roles"])


def _token_create(call: Call) -> tuple[dict[str, Any], str]:
    token_id, secret, expires = iam.create_token(call.ctx, call.target, ttl_days=int(call.params.get("ttl_days", 30)),
                                                 description=call.params.get("description", ""))  # fmt: skip
    return {"token_id": token_id, "user": call.target, "expires": expires}, secret


def _password_set(call: Call) -> dict[str, Any]:
    """The new password and the person's current TOTP code come beside the request (never in it: params are kept and audited)."""
    secret = iam.PENDING_PASSWORD.get()
    if secret is None or secret[0] != call.target:
        raise ApprovalError("no new password was given with this request", hint="set it with govctl iam password, or on the console's 账户 page")
    iam.verify_otp(call.ctx, call.target, secret[2])
    return iam.set_password(call.ctx, call.target, secret[1])


def _validate_review_close(call: Call) -> None:
    if call.ctx.gate.break_glass_alert_closer(call.target) == call.by:
        raise ApprovalError(f"{call.by} closed the break-glass alert of {call.target}; the review needs a second person",
                            hint="another security administrator must close the review")  # fmt: skip


def _review_close(call: Call) -> dict[str, Any]:
    return call.ctx.gate.close_review(call.target, reviewer=call.by, verdict=call.params["verdict"])


OPERATIONS = (
    Operation("iam.user.create", USER_T, TARGETS[USER_T], _user_create, UserCreate, validate=_validate_user_create, description="register a person"),
    Operation("iam.user.change", USER_T, TARGETS[USER_T], _user_change, UserChange, description="enable or disable a person"),
    Operation("iam.role.change", USER_T, TARGETS[USER_T], _role_change, RoleChange, validate=_validate_role_change, description="change a person's roles"),
    Operation("iam.token.create", USER_T, TARGETS[USER_T], _token_create, TokenCreate, description="a new API token for oneself"),
    Operation("iam.token.revoke", USER_T, TARGETS[USER_T], lambda c: iam.revoke_token(c.ctx, c.params["token_id"], owner=c.target),
              TokenRevoke, description="revoke an API token"),  # fmt: skip
    Operation("iam.password.set", USER_T, TARGETS[USER_T], _password_set, NoParams, description="set one's own console password (with a TOTP code)"),
    Operation("gate.review.close", OP_ID_T, TARGETS[OP_ID_T], _review_close, ReviewClose, validate=_validate_review_close,
              description="close the review of a break-glass operation"),  # fmt: skip
)
