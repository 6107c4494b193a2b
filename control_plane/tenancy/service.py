"""Departments' resources (申请 → 审批 → 开通 → 配额 → 回收): requests against quotas, hosts built by the same Pulumi program.

A department administrator (部门管理员) asks for hosts in a pool, a resize, an extension or a
return; each is a gate operation the bureau approves. Quotas per department and pool live in the
registry; a request that would exceed one is refused at once with the numbers. An approved
request is recorded as allocations (``deploy_allocations``) that ``govctl deploy`` puts into the
stack's spec, and the stack is deployed — the same program, the same engine, the same audit.
A department administrator sees only its own department's allocations and quota use.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from control_plane.clock import now_iso as utc_now_iso
from control_plane.deploy.models import allocations as t
from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.context import Context

DEPT_ROLE = "dept_admin"
DIMENSIONS = ("hosts", "vcpu", "memory_gib", "storage_gib")
LABELS = {"hosts": "hosts", "vcpu": "vCPU", "memory_gib": "memory GiB", "storage_gib": "storage GiB"}


class TenancyError(GovctlError):
    """A request that cannot be made as asked."""

    http_status = 409
    exit_code = 1


def registry(rt: Context) -> Any:
    """The department registry (quotas, departments)."""
    from control_plane.report.registry import load_registry

    s = rt.settings
    return load_registry(s.path(s.report.registry_file) if s.report.registry_file else None)


def department_of(rt: Context, user: str) -> str | None:
    """The department a department administrator acts for; None for the bureau's own roles (they act for any)."""
    from control_plane.gate import iam

    u = iam.get_user(rt, user) or {}
    if DEPT_ROLE in (u.get("roles") or []):
        return str(u.get("department") or "") or "-"
    return None


def scope(rt: Context, user: str, asked: str | None) -> str | None:
    """Which department a reader may see: a department administrator only their own, whatever they asked."""
    own = department_of(rt, user)
    if own is not None:
        if asked not in (None, own):
            raise TenancyError(f"{user} administers {own}, not {asked}", hint="a department administrator sees only their own department")
        return own
    return asked


def check_actor(rt: Context, user: str, department: str) -> None:
    """A department administrator acts only for their own department."""
    own = department_of(rt, user)
    if own is not None and own != department:
        raise TenancyError(f"{user} administers {own}; a request for {department} must come from that department", hint="ask its administrator")


def usage(rt: Context, department: str, pool: str, *, exclude: str | None = None) -> dict[str, int]:
    """What a department holds in a pool (active allocations, all stacks)."""
    with rt.engine.connect() as c:
        rows = c.execute(select(t).where(and_(t.c.department == department, t.c.pool == pool, t.c.status == "active"))).all()
    out = dict.fromkeys(DIMENSIONS, 0)
    for r in rows:
        if r.id == exclude:
            continue
        out["hosts"] += 1
        out["vcpu"] += r.vcpu
        out["memory_gib"] += r.memory_gib
        out["storage_gib"] += r.storage_gib
    return out


def check_quota(rt: Context, department: str, pool: str, add: dict[str, int], *, exclude: str | None = None) -> dict[str, Any]:
    """Refuse, with the numbers, a change that would take a department over its quota in a pool."""
    reg = registry(rt)
    dept = reg.department(department)
    if dept is None:
        raise TenancyError(f"no department {department!r} in the registry", hint=f"registered: {', '.join(d.code for d in reg.departments)}")
    quota = effective_quota(rt, dept, pool)
    if quota is None:
        raise TenancyError(f"{dept.name} ({department}) has no quota in the {pool} pool", hint="the bureau sets quotas in the registry (departments.<code>.quotas)")
    used = usage(rt, department, pool, exclude=exclude)
    over = [f"{LABELS[k]} {used[k]} + {add[k]} > {quota[k]}" for k in DIMENSIONS if used[k] + add.get(k, 0) > quota[k]]
    if over:
        raise TenancyError(f"over {dept.name}'s quota in the {pool} pool: {'; '.join(over)}",
                           hint="ask for less, return something first, or ask the bureau for a larger quota")  # fmt: skip
    return {"used": used, "quota": quota, "after": {k: used[k] + add.get(k, 0) for k in DIMENSIONS}}


def effective_quota(rt: Context, dept: Any, pool: str) -> dict[str, int] | None:
    """The quota in force: one the bureau set through the gate, else the registry's."""
    from control_plane.deploy.models import quotas as qt

    with rt.engine.connect() as c:
        r = c.execute(select(qt).where(and_(qt.c.department == dept.code, qt.c.pool == pool))).first()
    if r is not None:
        return {k: int(getattr(r, k)) for k in DIMENSIONS}
    q = dept.quotas.get(pool)
    return q.model_dump() if q is not None else None


def set_quota(rt: Context, department: str, pool: str, q: dict[str, int], *, by: str, op_id: str) -> dict[str, Any]:
    """The bureau changes a department's quota in a pool (never below what it holds now)."""
    from control_plane.deploy.models import quotas as qt

    reg = registry(rt)
    dept = reg.department(department)
    if dept is None:
        raise TenancyError(f"no department {department!r} in the registry")
    if pool not in reg.pools:
        raise TenancyError(f"no pool {pool!r}", hint=f"pools: {', '.join(reg.pools)}")
    used = usage(rt, department, pool)
    below = [f"{LABELS[k]} {q[k]} < {used[k]} held" for k in DIMENSIONS if q[k] < used[k]]
    if below:
        raise TenancyError(f"a quota below what {dept.name} holds in {pool}: {'; '.join(below)}", hint="reclaim first, then lower the quota")
    before = effective_quota(rt, dept, pool)
    with rt.engine.begin() as c:
        c.execute(qt.delete().where(and_(qt.c.department == department, qt.c.pool == pool)))
        c.execute(qt.insert().values(department=department, pool=pool, **{k: q[k] for k in DIMENSIONS}, by=by, op_id=op_id, updated=utc_now_iso()))
    return {"department": department, "pool": pool, "before": before, "after": {k: q[k] for k in DIMENSIONS}}


def check_expiry(expires: str | None) -> None:
    """An expiry date lies in the future."""
    if expires and date.fromisoformat(expires) <= date.today():
        raise TenancyError(f"expiry {expires} is not in the future", hint="give a later date (YYYY-MM-DD) or none for a permanent host")


def get(rt: Context, aid: str) -> dict[str, Any]:
    """One allocation, or a clear error."""
    with rt.engine.connect() as c:
        r = c.execute(select(t).where(t.c.id == aid)).first()
    if r is None:
        raise TenancyError(f"no allocation {aid!r}", hint="govctl resource list")
    return dict(r._mapping)


def listing(rt: Context, department: str | None = None, *, all_states: bool = False) -> list[dict[str, Any]]:
    """Allocations (active ones unless ``all_states``), optionally of one department."""
    q = select(t).order_by(t.c.created)
    if department:
        q = q.where(t.c.department == department)
    if not all_states:
        q = q.where(t.c.status == "active")
    with rt.engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(q)]
    from control_plane.deploy.service import outputs

    addr: dict[tuple[str, str], str] = {}
    for stack in {r["stack"] for r in rows}:
        outs = outputs(rt, stack)
        for role in ("primary", "backup"):
            for h, ip in (outs.get(f"{role}_hosts") or {}).items():
                addr[(stack, h)] = str(ip)
    for r in rows:
        r["host"] = f"{r['pool'][:4]}-r{r['slot']}"
        r["address"] = addr.get((r["stack"], r["host"]))
    return rows


def quotas(rt: Context, department: str | None = None) -> list[dict[str, Any]]:
    """Each department's quota and use per pool."""
    out = []
    for d in registry(rt).departments:
        if department and d.code != department:
            continue
        from control_plane.deploy.models import quotas as qt

        with rt.engine.connect() as c:
            pools = set(d.quotas) | {r.pool for r in c.execute(select(qt.c.pool).where(qt.c.department == d.code))}
        for pool in sorted(pools):
            out.append({"department": d.code, "name": d.name, "pool": pool, "quota": effective_quota(rt, d, pool), "used": usage(rt, d.code, pool)})
    return out


def _free_slots(rt: Context, stack: str, pool: str, n: int) -> list[int]:
    with rt.engine.connect() as c:
        taken = {r.slot for r in c.execute(select(t.c.slot).where(and_(t.c.stack == stack, t.c.pool == pool, t.c.status == "active")))}
    free = [i for i in range(1, 201) if i not in taken][:n]
    if len(free) < n:
        raise TenancyError(f"the {pool} pool of stack {stack} has no free place for {n} more hosts")
    return free


def _deploy(rt: Context, stack: str, progress: Any = None) -> dict[str, Any]:
    from control_plane.deploy import service as deploy
    from control_plane.monitoring import refresh

    out = deploy.up(rt, stack, progress)
    out["monitoring"] = refresh(rt)
    return out


def request(rt: Context, department: str, p: dict[str, Any], *, by: str, op_id: str, progress: Any = None) -> dict[str, Any]:
    """开通: record the approved hosts (quota checked again: another request may have landed since) and deploy the stack."""
    n = int(p["hosts"])
    add = {"hosts": n, "vcpu": n * p["vcpu"], "memory_gib": n * p["memory_gib"], "storage_gib": n * p["storage_gib"]}
    check_quota(rt, department, p["pool"], add)
    now = utc_now_iso()
    ids = []
    with rt.engine.begin() as c:
        for slot in _free_slots(rt, p["stack"], p["pool"], n):
            aid = f"al-{uuid.uuid4().hex[:12]}"
            ids.append(aid)
            c.execute(t.insert().values(id=aid, department=department, stack=p["stack"], pool=p["pool"], slot=slot, tier=p["tier"], vcpu=p["vcpu"],
                                        memory_gib=p["memory_gib"], storage_gib=p["storage_gib"], expires=p.get("expires") or "", status="active",
                                        requested_by=by, op_id=op_id, reason=p.get("reason") or "", created=now, updated=now))  # fmt: skip
    try:
        deployed = _deploy(rt, p["stack"], progress)
    except Exception:
        _set(rt, ids, status="failed")
        raise
    rows = {r["id"]: r for r in listing(rt, department)}
    return {"department": department, "allocations": [{"id": i, "host": rows[i]["host"], "address": rows[i]["address"]} for i in ids if i in rows],
            "stack": p["stack"], "deploy": deployed.get("summary")}  # fmt: skip


def _set(rt: Context, ids: list[str], **vals: Any) -> None:
    with rt.engine.begin() as c:
        c.execute(update(t).where(t.c.id.in_(ids)).values(**vals, updated=utc_now_iso()))


def resize(rt: Context, aid: str, p: dict[str, Any], *, progress: Any = None) -> dict[str, Any]:
    """A host's vCPU, memory or storage changed (quota checked without its current size)."""
    a = get(rt, aid)
    new = {k: p.get(k) or a[k] for k in ("vcpu", "memory_gib", "storage_gib")}
    check_quota(rt, a["department"], a["pool"], {"hosts": 1, **new}, exclude=aid)
    _set(rt, [aid], **new)
    try:
        deployed = _deploy(rt, a["stack"], progress)
    except Exception:
        _set(rt, [aid], **{k: a[k] for k in new})
        raise
    return {"allocation": aid, "before": {k: a[k] for k in new}, "after": new, "deploy": deployed.get("summary")}


def extend(rt: Context, aid: str, expires: str, *, progress: Any = None) -> dict[str, Any]:
    """A temporary host's expiry moved."""
    a = get(rt, aid)
    check_expiry(expires)
    _set(rt, [aid], expires=expires)
    deployed = _deploy(rt, a["stack"], progress)  # the host's expires tag follows
    return {"allocation": aid, "expires_before": a["expires"], "expires": expires, "deploy": deployed.get("summary")}


def give_back(rt: Context, aid: str, *, progress: Any = None) -> dict[str, Any]:
    """回收: the host is destroyed with its volume and its quota freed."""
    a = get(rt, aid)
    if a["status"] != "active":
        raise TenancyError(f"allocation {aid} is {a['status']}, not active")
    _set(rt, [aid], status="returned")
    try:
        deployed = _deploy(rt, a["stack"], progress)
    except Exception:
        _set(rt, [aid], status="active")
        raise
    return {"allocation": aid, "department": a["department"], "freed": {"hosts": 1, "vcpu": a["vcpu"], "memory_gib": a["memory_gib"],
                                                                        "storage_gib": a["storage_gib"]}, "deploy": deployed.get("summary")}  # fmt: skip


# -- reclamation requests and the department's answer --------------------------------------------


def reclaims(rt: Context, department: str | None = None) -> list[dict[str, Any]]:
    """Reclamation requests still open (the scheduler's resource.return awaiting a decision), with the department's answer."""
    import json

    from control_plane.deploy.models import reclaim_answers
    from control_plane.gate.models import operations

    with rt.engine.connect() as c:
        ops = c.execute(select(operations).where(and_(operations.c.requester == "system:scheduler", operations.c.operation == "resource.return",
                                                      operations.c.status.in_(("pending_approval", "approved"))))).all()  # fmt: skip
        answers = {r.op_id: dict(r._mapping) for r in c.execute(select(reclaim_answers))}
    out = []
    for o in ops:
        try:
            a = get(rt, o.target)
        except TenancyError:
            continue
        if department and a["department"] != department:
            continue
        out.append({"op": o.id, "allocation": a["id"], "department": a["department"], "host": f"{a['pool'][:4]}-r{a['slot']}", "reason": o.reason,
                    "kind": ((json.loads(o.origin) if o.origin else {}).get("job", "").split(":") + ["", ""])[1] or None, "status": o.status,
                    "answer": answers.get(o.id)})  # fmt: skip
    return out


def answer(rt: Context, op_id: str, reply: str, note: str, *, by: str) -> dict[str, Any]:
    """A department's answer to a reclamation request: confirm (give it back) or justify (keep it, and why); the approver reads it."""
    from control_plane.deploy.models import reclaim_answers

    found = next((r for r in reclaims(rt) if r["op"] == op_id), None)
    if found is None:
        raise TenancyError(f"{op_id} is not an open reclamation request", hint="govctl resource reclaims")
    check_actor(rt, by, found["department"])
    if reply == "justify" and not note.strip():
        raise TenancyError("a justification says why the host is still needed", hint="--note '…'")
    with rt.engine.begin() as c:
        c.execute(reclaim_answers.delete().where(reclaim_answers.c.op_id == op_id))
        c.execute(reclaim_answers.insert().values(op_id=op_id, allocation=found["allocation"], answer=reply, note=note, by=by, at=utc_now_iso()))
    return {"op": op_id, "allocation": found["allocation"], "answer": reply, "note": note}


# -- what a department administrator sees: its own hosts, backups, alerts and audit records ------------


def department_hosts(rt: Context, department: str) -> list[dict[str, Any]]:
    """The department's hosts: every host of the stacks it owns, and the hosts it requested in others'."""
    from control_plane.deploy.service import outputs, stack_spec, state_file

    out = []
    for stack in rt.settings.deploy.stacks:
        if not state_file(rt, stack).exists():
            continue
        outs = outputs(rt, stack)
        spec = stack_spec(rt, stack)
        mine_alloc = {f"{a['pool'][:4]}-r{a['slot']}": a["id"] for a in spec.get("allocations", []) if a["department"] == department}
        theirs = {f"{a['pool'][:4]}-r{a['slot']}" for a in spec.get("allocations", []) if a["department"] != department}
        for role in ("primary", "backup"):
            for h, ip in sorted((outs.get(f"{role}_hosts") or {}).items()):
                if h in mine_alloc or (spec.get("department") == department and h not in theirs):
                    out.append({"host": h, "address": str(ip), "stack": stack, "pool": role, "allocation": mine_alloc.get(h)})
    return out


def department_backups(rt: Context, department: str) -> list[dict[str, Any]]:
    """Restore points of the department's systems' data (their RPO status)."""
    from dr.service import rpo_status

    d = registry(rt).department(department)
    codes = {s.code for s in d.systems} if d else set()
    return [r for r in rpo_status(rt) if r["source"].split(".", 1)[0] in codes and "." in r["source"]]


def alert_concerns(alert: dict[str, Any], hosts: set[str]) -> bool:
    """An alert is about one of these hosts (its grouping or one of its events names it)."""
    key = str(alert.get("group_key") or "")
    if any(f"host.name={h}|" in key + "|" for h in hosts):
        return True
    return any(((e.get("host") or {}).get("name") in hosts) for e in alert.get("events") or [] if isinstance(e, dict))


def department_alerts(rt: Context, department: str, limit: int = 200) -> list[dict[str, Any]]:
    """SOC alerts about the department's hosts."""
    from control_plane.soc import alerts

    hosts = {h["host"] for h in department_hosts(rt, department)}
    return [a for a in alerts.search(rt.es, limit=limit) if alert_concerns(a, hosts)] if hosts else []


def department_audit(rt: Context, department: str, limit: int = 200) -> list[dict[str, Any]]:
    """Audit records about the department: requests for it, its hosts and allocations, and what its own people did."""
    from sqlalchemy import or_

    from control_plane.audit.models import records
    from control_plane.gate.models import users

    with rt.engine.connect() as c:
        people = [r.name for r in c.execute(select(users.c.name).where(users.c.department == department))]
        ids = [r.id for r in c.execute(select(t.c.id).where(t.c.department == department))]
    targets = [department, *ids, *(h["host"] for h in department_hosts(rt, department))]
    conds = [records.c.target.in_(targets)] + ([records.c.actor.in_(people)] if people else [])
    with rt.engine.connect() as c:
        rows = c.execute(select(records).where(or_(*conds)).order_by(records.c.seq.desc()).limit(limit)).all()
    return [{"seq": r.seq, "ts": r.ts, "actor": r.actor, "operation": r.operation, "target": r.target, "decision": r.decision, "outcome": r.outcome}
            for r in rows]  # fmt: skip


def department_usage(rt: Context, department: str) -> dict[str, Any]:
    """The department's figures in the newest monthly report (allocated vs used vCPU, memory, storage; its hosts; its under-used ones)."""
    from control_plane.report import store

    revs = store.all_revisions(rt)
    if not revs:
        return {"month": None, "department": None, "hosts": [], "underused": [], "note": "no monthly report built yet"}
    b = revs[0]
    doc = store.load(b)
    return {"month": b.month, "revision": b.revision, "department": next((d for d in doc.get("departments", []) if d.get("department") == department), None),
            "hosts": [h for h in doc.get("hosts", []) if h.get("department") == department],
            "underused": [u for u in doc.get("underused", []) if u.get("department") == department]}  # fmt: skip
