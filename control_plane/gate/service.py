"""The operation gate: the one path every change to the world takes.

authenticate → authorize (role and whitelist of role, operation, target, source network)
→ risk (policy) → SOC inline decision → approval (bound to the SM3 hash of the exact request;
high: one approver, critical: two distinct ones, never the requester; single use, expiring)
→ run → audit before and after, with the outcome. Every refusal is audited too.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import secrets
import time
from dataclasses import replace
from datetime import datetime, timezone
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from control_plane import clock, metrics
from control_plane.audit import AuditEvent
from control_plane.audit.models import canonical_json
from control_plane.clock import now_iso as utc_now_iso
from control_plane.errors import GovctlError
from control_plane.gate import iam
from control_plane.gate.errors import ApprovalError, Blocked, DependencyDown, Forbidden, GateError, NotFound, Unauthenticated
from control_plane.gate.decision import AlertRef, AlertSink, AllowAll, Decision, InlineDecider, OperationEvent, SocUnavailable
from control_plane.gate.models import OperationRequest, OperationView, Principal, approvals, operations, request_hash, reviews
from control_plane.gate.policy import Policy
from control_plane.operation import SYSTEM_PREFIX, Call, InvalidRequest, Operation, system_principal  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.gate")
BREAK_GLASS_ALERT = "gate-break-glass-"
APPROVER_ROLE = "approver"


_iso_in = clock.iso_in


class Gate:
    """Decides, records and runs operations for one runtime."""

    def __init__(self, ctx: Context, policy: Policy, operations: Mapping[str, Operation], *,
                 soc: InlineDecider | None = None, alerts: AlertSink | None = None) -> None:  # fmt: skip
        self.rt = ctx
        self.policy = policy
        self.operations = dict(operations)
        self.soc: InlineDecider = soc if soc is not None else AllowAll()
        self.alerts = alerts

    # -- authentication ------------------------------------------------------------------------

    def authenticate(self, token: str | None, *, source: str, local_user: str | None = None) -> Principal:
        """A principal from a bearer token, or (local CLI only) from the OS user's configured roles."""
        keys: list[str] = []
        try:
            if token:
                parts = token.strip().split("_", 2)
                keys = [f"token:{parts[1][:16]}" if len(parts) == 3 else "token:malformed"] + ([] if source == "local" else [f"source:{source}"])
                locked = iam.locked_out(self.rt, *keys)
                if locked:
                    keys = []  # a locked-out attempt does not extend its own lockout
                    raise Unauthenticated(f"too many failed logins for {locked}; locked for up to {iam.FAIL_WINDOW_S // 60} minutes",
                                          hint="wait, or ask a security administrator to check the audit trail")  # fmt: skip
                user, token_id = iam.verify_token(self.rt, token)
                row = iam.get_user(self.rt, user)
                if row is None or row["disabled"]:
                    raise Unauthenticated(f"user {user!r} is disabled or gone", hint="ask a security administrator")
                return Principal(user, tuple(row["roles"]), source, "token", token_id)
            if source == "local" and local_user is not None:
                roles = self.rt.settings.gate.local_peer_roles.get(local_user)
                if roles:
                    return Principal(f"local:{local_user}", tuple(roles), "local", "peer")
            raise Unauthenticated(
                "no credentials", hint="pass --token (or set GOVCTL_TOKEN); tokens come from `govctl iam token create`"
            )
        except Unauthenticated as exc:
            if keys:
                iam.record_failure(self.rt, *keys)
            self._audit(Principal("anonymous", (), source, "none"), OperationRequest("gate.authenticate"), "deny", "refused", {"error": exc.message})
            metrics.GATE_DECISIONS.labels(operation="authenticate", decision="unauthenticated").inc()
            raise

    # -- the decision ------------------------------------------------------------------------------

    def authorize(self, p: Principal, req: OperationRequest) -> None:
        """Raise Forbidden unless the principal's roles and source allow the request."""
        op = self.policy.operations.get(req.operation)
        if op is None:
            raise Forbidden(f"unknown operation {req.operation!r}", hint=f"known: {', '.join(sorted(self.policy.operations))}")
        if p.via == "system" or p.name.startswith(SYSTEM_PREFIX):
            sp = self.policy.system.get(p.name)
            if p.via != "system" or sp is None or req.operation not in sp.operations:
                raise Forbidden(f"{p.name} may not {req.operation}", hint="the policy's system: section lists what each system principal may request")
            return
        allowed = set(p.roles) & set(op.roles)
        if not allowed:
            raise Forbidden(f"{p.name} ({', '.join(p.roles) or 'no roles'}) may not {req.operation}",
                            hint=f"it needs one of the roles: {', '.join(op.roles)}")  # fmt: skip
        if op.self_only_except is not None and req.target != p.name and not set(p.roles) & set(op.self_only_except):
            raise Forbidden(f"{p.name} may {req.operation} only for themself, not for {req.target!r}",
                            hint=f"a user with {', '.join(op.self_only_except)} can do it for others")  # fmt: skip
        if not any(w.matches(list(allowed), req.operation, req.target, p.source) for w in self.policy.whitelist):
            raise Forbidden(f"no whitelist entry allows {req.operation} on {req.target!r} from {p.source} for {', '.join(sorted(allowed))}",
                            hint="ask a security administrator to extend the gate policy's whitelist")  # fmt: skip

    def authorize_read(self, p: Principal, read: str) -> None:
        """Raise Forbidden unless the policy's ``reads:`` entry admits one of the principal's roles from its source; denials are audited."""
        rd = self.policy.reads.get(read)
        try:
            if rd is None:
                raise Forbidden(f"unknown read {read!r}", hint=f"known: {', '.join(sorted(self.policy.reads))}")
            allowed = set(p.roles) & set(rd.roles)
            if not allowed:
                raise Forbidden(f"{p.name} ({', '.join(p.roles) or 'no roles'}) may not read {read}", hint=f"it needs one of the roles: {', '.join(rd.roles)}")
            if not any(w.matches(list(allowed), read, "", p.source) for w in self.policy.whitelist):
                raise Forbidden(f"no whitelist entry allows reading {read} from {p.source}", hint="ask a security administrator to extend the whitelist")
        except Forbidden as exc:
            self._audit(p, OperationRequest(read), "deny", "refused", {"error": exc.message, "read": True})
            metrics.GATE_DECISIONS.labels(operation=read, decision="Forbidden").inc()
            raise

    def _soc_decision(self, p: Principal, req: OperationRequest, risk: str) -> Decision:
        event = OperationEvent(req.operation, req.target, req.params, p.name, p.roles, p.source)
        try:
            return self.soc.evaluate(event)
        except (SocUnavailable, OSError) as exc:
            mode = self.policy.fail_mode_of(req.operation, risk)  # type: ignore[arg-type]
            if mode == "closed":
                raise DependencyDown(f"SOC engine unavailable ({exc}); {req.operation} is {risk} risk and fails closed",
                                     hint="retry when Elasticsearch is back, or use break-glass if this is an emergency") from None  # fmt: skip
            return Decision("allow", reasons=(f"SOC engine unavailable ({exc}); allowed because the policy fails open for {risk} risk",), degraded=True)

    def submit(self, p: Principal, req: OperationRequest, *, progress: Callable[..., None] | None = None) -> OperationView:
        """Decide on a request; run it at once if it needs no approval, else leave it pending."""
        t0 = time.perf_counter()
        try:
            self.authorize(p, req)
            if not isinstance(req.reason, str) or len(req.reason) > 2000:
                raise InvalidRequest("reason must be text of at most 2000 characters")
            spec = self.operations.get(req.operation)
            if spec is None:
                raise GateError(f"{req.operation} is in the policy but no domain declares it", hint="declare it in <domain>/ops.py")
            # typed before anything compares a value: unknown keys, wrong types and bad targets are refused here
            if req.origin and p.via != "system":
                raise InvalidRequest("origin is set by the control plane's own engines only", hint="leave origin out of the request")
            req = replace(req, params=spec.parse(req.target, req.params), origin=_origin(req.origin))
            if req.break_glass:
                self._check_break_glass(p, req)
            if spec.validate is not None:
                # validators learn who asks (the authenticated requester), never from the request itself
                normalised = spec.validate(Call(self.rt, req.target, req.params, p.name, origin=req.origin))
                if normalised is not None:
                    req = replace(req, params=normalised)
            risk = self.policy.risk_of(req.operation, req.target, req.params)
            decision = self._soc_decision(p, req, risk)
            if decision.action == "block":
                raise Blocked(f"blocked by the SOC engine: {'; '.join(decision.reasons)}",
                              hint=f"rules: {', '.join(decision.matched_rules)}; a security administrator can add an exception")  # fmt: skip
            if decision.action == "require_approval" and risk == "low":
                risk = "high"
            needed = self.policy.approval.required.get(risk, 2)  # type: ignore[call-overload]
            if req.break_glass or (p.via == "system" and req.operation in self.policy.system[p.name].unattended):
                needed = 0
        except GovctlError as exc:
            self._audit(p, req, "deny", "refused", {"error": exc.message})
            metrics.GATE_DECISIONS.labels(operation=req.operation, decision=type(exc).__name__).inc()
            raise
        h = request_hash(req.operation, req.target, req.params, reason=req.reason, break_glass=req.break_glass, origin=req.origin)
        op_id = f"op-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(4)}"
        now = utc_now_iso()
        # a system principal's request (a SOC response) is previewed when an approver opens it, never inside a detection pass
        preview = self._preview(req, p.name) if needed and spec.preview is not None and p.via != "system" else None
        row = {
            "id": op_id, "operation": req.operation, "target": req.target, "params": canonical_json(req.params),
            "request_hash": h, "requester": p.name, "roles": json.dumps(list(p.roles)), "source": p.source,
            "reason": req.reason, "risk": risk, "approvals_needed": needed,
            "status": "approved" if needed == 0 else "pending_approval", "soc": json.dumps(decision.as_dict()),
            "preview": json.dumps(preview) if preview is not None else "", "result": "", "break_glass": req.break_glass,
            "origin": canonical_json(req.origin or {}),
            "created": now, "expires": _iso_in(self.policy.approval.request_ttl_s), "updated": now,
        }  # fmt: skip
        with self.rt.engine.begin() as conn:
            conn.execute(operations.insert().values(**row))
        self._audit(p, req, "break_glass" if req.break_glass else ("allow" if needed == 0 else "require_approval"),
                    "accepted", {"op": op_id, "risk": risk, "approvals_needed": needed, "soc": decision.as_dict()}, op_id)  # fmt: skip
        metrics.GATE_DECISIONS.labels(operation=req.operation, decision="allow" if needed == 0 else "pending").inc()
        metrics.GATE_SECONDS.observe(time.perf_counter() - t0)
        if req.break_glass:
            self._open_review(op_id, p, req)
        if needed == 0:
            return self.run(p, op_id, progress=progress)
        return self.get(op_id)

    def _preview(self, req: OperationRequest, by: str) -> Any:
        """What the approver will see; a preview that fails says so instead of blocking the request."""
        spec = self.operations[req.operation]
        try:
            return spec.preview(Call(self.rt, req.target, req.params, by, origin=req.origin or {})) if spec.preview else None
        except Exception as exc:  # noqa: BLE001 - shown to the approver, who decides
            log.warning("preview of %s on %s failed: %s", req.operation, req.target, exc)
            return {"error": f"the preview failed: {type(exc).__name__}: {getattr(exc, 'message', exc)}"}

    def _check_break_glass(self, p: Principal, req: OperationRequest) -> None:
        bg = self.policy.break_glass
        if not set(p.roles) & set(bg.roles):
            raise Forbidden(f"{p.name} may not use break-glass", hint=f"break-glass is for: {', '.join(bg.roles) or 'nobody'}")
        if not any(fnmatch.fnmatchcase(req.operation, o) for o in bg.operations):
            raise Forbidden(f"break-glass does not cover {req.operation}", hint=f"it covers: {', '.join(bg.operations)}")
        if not req.reason.strip():
            raise GateError("break-glass needs a reason", hint="say why with --reason")

    # -- approvals ---------------------------------------------------------------------------------

    def _load(self, op_id: str) -> Any:
        with self.rt.engine.connect() as conn:
            row = conn.execute(select(operations).where(operations.c.id == op_id)).first()
        if row is None:
            raise NotFound(f"no operation {op_id!r}", hint="list them with govctl ops list")
        return row

    def approve(self, p: Principal, op_id: str, comment: str = "", *, decision: str = "approve", otp: str | None = None) -> OperationView:
        """Record an approver's decision on the exact request; enough approvals make it runnable.

        Approvals come from registered people only (a token, never a peer or system principal), each
        person counts once, and a person with a second factor gives its current code.
        """
        row = self._load(op_id)
        req = OperationRequest(row.operation, row.target, json.loads(row.params))
        try:
            if APPROVER_ROLE not in p.roles:
                raise Forbidden(f"{p.name} is not an approver", hint="approvals need the approver role")
            person = iam.get_user(self.rt, p.name) if p.via in ("token", "console") else None
            if person is None:
                raise Forbidden(f"{p.name} is not a registered person; approvals come from people who signed in with their own token")
            if person.get("totp_secret"):
                iam.verify_otp(self.rt, p.name, otp)
            if not isinstance(comment, str) or len(comment) > 2000:
                raise ApprovalError("a comment is text of at most 2000 characters")
            if not any(w.matches([APPROVER_ROLE], "ops.approve", row.target, p.source) for w in self.policy.whitelist):
                raise Forbidden(f"approvals from {p.source} are not whitelisted")
            if p.name == row.requester:
                raise ApprovalError("the requester cannot approve their own operation", hint="ask another approver")
            if row.status != "pending_approval":
                raise ApprovalError(f"operation {op_id} is {row.status}, not awaiting approval")
            if row.expires <= utc_now_iso():
                self._set_status(op_id, "expired")
                raise ApprovalError(f"operation {op_id} expired at {row.expires}", hint="submit it again")
            current = _row_hash(row)
            if current != row.request_hash:
                raise ApprovalError(f"operation {op_id} was changed after it was submitted", hint="submit it again")
            with self.rt.engine.begin() as conn:
                # conditional on the status in the same transaction: a cancel or rejection in between wins
                if conn.execute(update(operations).where(and_(operations.c.id == op_id, operations.c.status == "pending_approval"))
                                .values(updated=utc_now_iso())).rowcount != 1:  # fmt: skip
                    raise ApprovalError(f"operation {op_id} is no longer awaiting approval", hint=f"govctl ops show {op_id}")
                if conn.execute(select(approvals.c.approver).where(and_(approvals.c.op_id == op_id, approvals.c.approver == p.name))).first():
                    raise ApprovalError(f"{p.name} already decided on {op_id}", hint="a second approval must come from someone else")
                conn.execute(approvals.insert().values(op_id=op_id, approver=p.name, decision=decision, request_hash=current,
                                                       comment=comment, ts=utc_now_iso(), expires=_iso_in(self.policy.approval.approval_ttl_s)))  # fmt: skip
        except GovctlError as exc:
            self._audit(p, req, "deny", "refused", {"op": op_id, "error": exc.message, "as": f"ops.{decision}"}, op_id, operation=f"ops.{decision}")
            raise
        if decision == "reject":
            self._set_status(op_id, "rejected", expect="pending_approval")
        elif self._valid_approvals(self._load(op_id)) >= row.approvals_needed:
            self._set_status(op_id, "approved", expect="pending_approval")
        self._audit(p, req, decision, "succeeded", {"op": op_id, "comment": comment}, op_id, operation=f"ops.{decision}")
        return self.get(op_id)

    def _valid_approvals(self, row: Any) -> int:
        now = utc_now_iso()
        current = _row_hash(row)
        with self.rt.engine.connect() as conn:
            rows = conn.execute(select(approvals).where(approvals.c.op_id == row.id)).all()
        good = {a.approver for a in rows if a.decision == "approve" and a.request_hash == current == row.request_hash
                and a.expires > now and a.approver != row.requester}  # fmt: skip
        return len(good)

    def cancel(self, p: Principal, op_id: str) -> OperationView:
        """The requester (or a security administrator) withdraws a pending or approved operation."""
        row = self._load(op_id)
        req = OperationRequest(row.operation, row.target, json.loads(row.params))
        if p.name != row.requester and "secadmin" not in p.roles:
            exc = Forbidden(f"only {row.requester} or a security administrator may cancel {op_id}")
            self._audit(p, req, "deny", "refused", {"op": op_id, "error": exc.message}, op_id, operation="ops.cancel")
            raise exc
        if row.status not in ("pending_approval", "approved") or not self._set_status(op_id, "cancelled", expect=row.status):
            raise ApprovalError(f"operation {op_id} is {self._load(op_id).status}; only pending or approved operations can be cancelled")
        self._audit(p, req, "cancel", "succeeded", {"op": op_id}, op_id, operation="ops.cancel")
        return self.get(op_id)

    # -- running -----------------------------------------------------------------------------------

    def run(self, p: Principal, op_id: str, *, progress: Callable[..., None] | None = None) -> OperationView:
        """Run an approved operation once: the requester only, approvals re-checked against the request."""
        row = self._load(op_id)
        params = json.loads(row.params)
        req = OperationRequest(row.operation, row.target, params, row.reason, bool(row.break_glass))
        try:
            if p.name != row.requester:
                raise ApprovalError(f"only the requester {row.requester} may run {op_id}")
            if row.status != "approved":
                raise ApprovalError(f"operation {op_id} is {row.status}, not approved", hint="it needs its approvals first")
            if row.expires <= utc_now_iso():
                self._set_status(op_id, "expired")
                raise ApprovalError(f"operation {op_id} expired at {row.expires}")
            if _row_hash(row) != row.request_hash:
                raise ApprovalError(f"operation {op_id} was changed after approval: its approvals are void", hint="submit it again")
            if not row.break_glass and self._valid_approvals(row) < row.approvals_needed:
                raise ApprovalError(f"operation {op_id} lacks valid approvals ({row.approvals_needed} needed; expired or voided ones do not count)")
            with self.rt.engine.begin() as conn:  # single use: only one runner wins this transition
                won = conn.execute(update(operations).where(and_(operations.c.id == op_id, operations.c.status == "approved"))
                                   .values(status="running", updated=utc_now_iso())).rowcount  # fmt: skip
            if won != 1:
                raise ApprovalError(f"operation {op_id} is already running or done")
        except GovctlError as exc:
            self._audit(p, req, "deny", "refused", {"op": op_id, "error": exc.message}, op_id, operation="ops.run")
            raise
        self._audit(p, req, "allow", "started", {"op": op_id, "risk": row.risk}, op_id)
        secret = None
        try:
            # "_by": the authenticated requester, for handlers that record who acted (never taken from the request)
            # "_approvers": who approved it (a correction's sign-off, for instance)
            with self.rt.engine.connect() as conn:
                signed = [a for (a,) in conn.execute(select(approvals.c.approver).where(and_(approvals.c.op_id == op_id, approvals.c.decision == "approve"))
                                                     .order_by(approvals.c.ts))]  # fmt: skip
            call = Call(self.rt, row.target, params, row.requester, op_id=op_id, approvers=tuple(signed), origin=_row_origin(row), progress=progress)
            out = self.operations[row.operation].run(call)
            if isinstance(out, tuple):
                out, secret = out
            status, outcome = "succeeded", "succeeded"
        except Exception as exc:  # noqa: BLE001 - the outcome is recorded whatever it is
            out, status, outcome = {"error": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"}, "failed", "failed"
        with self.rt.engine.begin() as conn:
            conn.execute(update(operations).where(operations.c.id == op_id)
                         .values(status=status, result=json.dumps(out, default=str), updated=utc_now_iso()))  # fmt: skip
        self._audit(p, req, "allow", outcome, {"op": op_id, "result_sm3": _digest(out)}, op_id)
        view = self.get(op_id)
        view.secret = secret
        if status == "failed":
            err = out["error"]
            raise GateError(f"{row.operation} on {row.target!r} failed: {err}", hint=f"details: govctl ops show {op_id}")
        return view

    # -- break-glass reviews -----------------------------------------------------------------------

    def _open_review(self, op_id: str, p: Principal, req: OperationRequest) -> None:
        with self.rt.engine.begin() as conn:
            conn.execute(reviews.insert().values(op_id=op_id, opened=utc_now_iso(), status="open", alert_sent=False))
        metrics.GATE_BREAK_GLASS.inc()
        self.send_break_glass_alerts()

    # -- reading -----------------------------------------------------------------------------------

    def get(self, op_id: str, *, opened_by: Principal | None = None) -> OperationView:
        """One operation with its approvals; opened by an approver, a deferred preview is made now (by anyone else, never)."""
        row = self._load(op_id)
        open_preview = opened_by is not None and APPROVER_ROLE in opened_by.roles and opened_by.via in ("token", "console")
        if open_preview and not row.preview and row.status == "pending_approval" and self.operations.get(row.operation, None) is not None \
                and self.operations[row.operation].preview is not None:  # fmt: skip
            req = OperationRequest(row.operation, row.target, json.loads(row.params), row.reason, bool(row.break_glass), _row_origin(row))
            preview = self._preview(req, row.requester)
            with self.rt.engine.begin() as conn:
                conn.execute(update(operations).where(and_(operations.c.id == op_id, operations.c.preview == "")).values(preview=json.dumps(preview)))
            row = self._load(op_id)
        with self.rt.engine.connect() as conn:
            aps = conn.execute(select(approvals).where(approvals.c.op_id == op_id).order_by(approvals.c.ts)).all()
        return OperationView.from_row(row, aps)

    def list(self, *, status: str | None = None, limit: int = 50) -> list[OperationView]:
        """Operations, newest first, optionally by status."""
        q = select(operations).order_by(operations.c.created.desc()).limit(limit)
        if status:
            q = q.where(operations.c.status == status)
        with self.rt.engine.connect() as conn:
            rows = conn.execute(q).all()
            aps = conn.execute(select(approvals).where(approvals.c.op_id.in_([r.id for r in rows]))).all() if rows else []
        return [OperationView.from_row(r, [a for a in aps if a.op_id == r.id]) for r in rows]

    # -- break-glass reviews and their alerts --------------------------------------------------------

    def open_reviews(self) -> list[dict[str, Any]]:
        """Break-glass reviews not yet closed."""
        with self.rt.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(reviews).where(reviews.c.status == "open").order_by(reviews.c.opened))]

    def close_review(self, op_id: str, *, reviewer: str, verdict: str) -> dict[str, Any]:
        """Close a break-glass review with a verdict (the reviewer must not be the one who broke the glass)."""
        with self.rt.engine.connect() as conn:
            op = conn.execute(select(operations.c.requester).where(operations.c.id == op_id)).first()
        if op is None:
            raise NotFound(f"no operation {op_id!r}")
        if op.requester == reviewer:
            raise ApprovalError("whoever broke the glass cannot review it", hint="another security administrator must")
        if self.break_glass_alert_closer(op_id) == reviewer:
            raise ApprovalError(f"{reviewer} closed the break-glass alert of {op_id}; the review needs a second person",
                                hint="another security administrator must close the review")  # fmt: skip
        with self.rt.engine.begin() as conn:
            n = conn.execute(update(reviews).where(and_(reviews.c.op_id == op_id, reviews.c.status == "open"))
                             .values(status="closed", reviewer=reviewer, verdict=verdict, closed=utc_now_iso())).rowcount  # fmt: skip
        if not n:
            raise NotFound(f"no open review for {op_id}")
        return {"review": op_id, "status": "closed", "verdict": verdict}

    def break_glass_alert_closer(self, op_id: str) -> str | None:
        """Who closed the critical alert a break-glass operation raised (None if open, unsent or unreadable)."""
        return self.alerts.closed_by(f"{BREAK_GLASS_ALERT}{op_id}") if self.alerts is not None else None

    def break_glass_reviewer(self, op_id: str) -> str | None:
        """Who closed the break-glass review of an operation, if anyone has."""
        with self.rt.engine.connect() as conn:
            return conn.execute(select(reviews.c.reviewer).where(reviews.c.op_id == op_id, reviews.c.status == "closed")).scalar()

    def send_break_glass_alerts(self) -> int:
        """Raise a critical alert for each break-glass review not yet alerted; keep the rest for the next try."""
        if self.alerts is None:
            return 0
        with self.rt.engine.connect() as conn:
            pending = conn.execute(select(reviews, operations).join(operations, operations.c.id == reviews.c.op_id)
                                   .where(reviews.c.alert_sent.is_(False))).all()  # fmt: skip
        sent = 0
        for r in pending:
            alert = AlertRef(id=f"{BREAK_GLASS_ALERT}{r.op_id}", rule="gate.break_glass", title="Break-glass operation", severity="critical",
                             summary=f"{r.requester} used break-glass for {r.operation} on {r.target}: {r.reason}", at=r.opened,
                             operation={"id": r.op_id, "type": r.operation, "target": r.target, "requester": r.requester, "source": r.source})  # fmt: skip
            try:
                self.alerts.raise_alert(alert)
            except Exception as exc:  # noqa: BLE001 - the sink's client raises its own transport errors; retried by the gate.alerts job
                log.warning("break-glass alert for %s not sent yet: %s: %s", r.op_id, type(exc).__name__, exc)
                break
            with self.rt.engine.begin() as conn:
                conn.execute(update(reviews).where(reviews.c.op_id == r.op_id).values(alert_sent=True))
            sent += 1
        return sent

    def _set_status(self, op_id: str, status: str, *, expect: str | None = None) -> bool:
        """Set the status (only from ``expect`` when given); True if this call changed it."""
        q = update(operations).where(operations.c.id == op_id)
        if expect is not None:
            q = q.where(operations.c.status == expect)
        with self.rt.engine.begin() as conn:
            return conn.execute(q.values(status=status, updated=utc_now_iso())).rowcount == 1

    def record(self, p: Principal, operation: str, *, target: str = "", params: Any = None, decision: str = "allow",
               outcome: str = "succeeded", details: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Audit something a principal did that is not an operation (an enrolment, a bootstrap, ingesting events, stopping)."""
        self._audit(p, OperationRequest(operation, target, params if isinstance(params, dict) else {}), decision, outcome, details or {})

    def _audit(self, p: Principal, req: OperationRequest, decision: str, outcome: str, details: dict[str, Any],
               request_id: str = "", *, operation: str | None = None) -> None:  # fmt: skip
        self.rt.ledger.append(AuditEvent(
            actor=p.name, role=",".join(p.roles), source=p.source, operation=operation or req.operation,
            target=req.target, params=req.params, decision=decision, outcome=outcome, request_id=request_id,
            details={**details, "via": p.via, **({"break_glass": True, "reason": req.reason} if req.break_glass else {})},
        ))  # fmt: skip


def _row_hash(row: Any) -> str:
    """The request hash recomputed from what is stored: every field that changes what runs or why."""
    return request_hash(row.operation, row.target, json.loads(row.params), reason=row.reason, break_glass=bool(row.break_glass),
                        origin=_row_origin(row))  # fmt: skip


def _digest(out: Any) -> str:
    from control_plane.crypto import sm3_hex

    return sm3_hex(json.dumps(out, sort_keys=True, default=str).encode())


def _origin(origin: Any) -> dict[str, str]:
    """A request's typed origin: what raised it (``{"alert": id}``), short text keys and values only."""
    if origin is None:
        return {}
    if not isinstance(origin, dict) or len(origin) > 4 or not all(
        isinstance(k, str) and k in ("alert", "job") and isinstance(v, str) and 0 < len(v) <= 256 for k, v in origin.items()
    ):
        raise InvalidRequest("origin must map 'alert' or 'job' to an id", hint="only the control plane's own engines set an origin")
    return dict(origin)


def _row_origin(row: Any) -> dict[str, str]:
    return json.loads(row.origin) if getattr(row, "origin", "") else {}
