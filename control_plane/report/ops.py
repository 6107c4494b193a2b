"""The monthly report's operations: build (or correct) a month, submit it to the province."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from control_plane import clock
from control_plane.operation import MONTH_T, TARGETS, Call, Operation, Params, Reason
from control_plane.report import deliver, store
from control_plane.report.build import month_window


class ReportBuild(Params):
    correction: bool = False
    reason: Reason = ""


class ReportSubmit(Params):
    revision: int | None = Field(default=None, ge=1)


def _validate_build(call: Call) -> None:
    """One rule for a person and for the scheduler: a month is built once, then only corrected with a reason."""
    month_window(call.target)  # YYYY-MM or a clear error
    prior = store.latest(call.ctx, call.target)
    provisional_done = prior is not None and not store.load(prior).get("final", True) and month_window(call.target)[1] <= clock.now()
    if prior is not None and not call.params.get("correction") and not provisional_done:
        raise store.ReportExists(f"{call.target} is already built (revision {prior.revision}, {prior.created[:19]}); reports are immutable",
                                 hint=f"show it: govctl report show --month {call.target}; a correction is a new revision: --correct 'why' (needs an approver)")  # fmt: skip
    if call.params.get("correction"):
        if not str(call.params.get("reason") or "").strip():
            raise store.ReportError("a correction needs a reason", hint="--correct 'what was wrong and what changed'")
        if prior is None:
            raise store.ReportError(f"{call.target} has no revision to correct", hint="build it first without --correct")


def _build(call: Call) -> dict[str, Any]:
    reason = call.params.get("reason") if call.params.get("correction") else None
    b = store.build(call.ctx, call.target, actor=call.by, reason=reason, signoff=list(call.approvers))
    if not store.load(b).get("final"):
        return b.as_dict() | {"provisional": True}
    return b.as_dict()


def _final(call: Call) -> store.Built:
    b = store.get(call.ctx, call.target, call.params.get("revision"))
    if not store.load(b).get("final"):
        raise store.ReportError(f"{call.target} r{b.revision} was built before the month ended (provisional); it is not submitted",
                                hint=f"after the month ends: govctl report build --month {call.target}, then submit")  # fmt: skip
    return b


def _validate_submit(call: Call) -> None:
    """Nowhere to send it or no key to seal it for is a configuration error, and a provisional month is never sent: all before anything is queued."""
    _ = call.ctx.settings.report.endpoint_url  # unset: ConfigError with the hint
    if call.ctx.settings.report.province_public_key is None:
        deliver.province_key(call.ctx)  # raises the ConfigError that says what to set
    _final(call)
    deliver.province_key(call.ctx)  # configured, so it must be readable


def _submit(call: Call) -> dict[str, Any]:
    b = _final(call)  # again at run time
    d = deliver.enqueue(call.ctx, b)
    if d["status"] == "pending":
        d = deliver.attempt(call.ctx, d)
    return {k: v for k, v in d.items() if k != "receipt"} | {"receipt_id": (d["receipt"] or {}).get("receipt", {}).get("receipt_id")}


OPERATIONS = (
    Operation("report.build", MONTH_T, TARGETS[MONTH_T], _build, ReportBuild, validate=_validate_build,
              description="build and sign a month's report (a correction is a new revision)"),  # fmt: skip
    Operation("report.submit", MONTH_T, TARGETS[MONTH_T], _submit, ReportSubmit, validate=_validate_submit,
              description="submit a month to the province"),  # fmt: skip
)
