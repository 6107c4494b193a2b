"""`govctl resource`: a department's hosts — request, resize, extend, return — and its quota use."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from control_plane.clikit import JsonOpt, changes, context, emit_json, gated, out, pending_note, principal, reads

resource_app = typer.Typer(help="Departments' hosts (申请 → 审批 → 开通 → 配额 → 回收): request, resize, extend, return, list, quota.", no_args_is_help=True)


def _done(view: Any, as_json: bool, fmt: Any) -> None:
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        fmt(view.result)


@resource_app.command("request")
@changes("resource.request")
def resource_request(department: str = typer.Option(..., "--department", help="The department's code (a 部门管理员: their own)."),
                     hosts: int = typer.Option(1, "--hosts"), vcpu: int = typer.Option(..., "--vcpu"), memory: int = typer.Option(..., "--memory", help="GiB"),
                     storage: int = typer.Option(..., "--storage", help="GiB"), pool: str = typer.Option("primary", "--pool"),
                     zone: Optional[str] = typer.Option(None, "--zone", help="The network zone the hosts must be in (checked against the pool's)."),
                     tier: str = typer.Option("app", "--tier", help="app or data"), stack: str = typer.Option("local", "--stack"),
                     expires: Optional[str] = typer.Option(None, "--expires", help="YYYY-MM-DD for a temporary host"),
                     reason: str = typer.Option("", "--reason"), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Ask for hosts within the department's quota; the bureau approves, then they are deployed (high risk)."""
    params: dict[str, Any] = {"stack": stack, "pool": pool, "hosts": hosts, "tier": tier, "vcpu": vcpu, "memory_gib": memory, "storage_gib": storage,
                              "reason": reason}  # fmt: skip
    if expires:
        params["expires"] = expires
    if zone:
        params["network_zone"] = zone
    view = gated("resource.request", department, params, reason=reason)
    _done(view, as_json, lambda r: out.print("\n".join(f"{a['id']}: {a['host']} {a.get('address') or ''}" for a in r["allocations"])))


@resource_app.command("resize")
@changes("resource.resize")
def resource_resize(allocation: str, vcpu: Optional[int] = typer.Option(None, "--vcpu"), memory: Optional[int] = typer.Option(None, "--memory"),
                    storage: Optional[int] = typer.Option(None, "--storage"), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Change a host's vCPU, memory (GiB) or storage (GiB), within the quota (high risk)."""
    params = {k: v for k, v in (("vcpu", vcpu), ("memory_gib", memory), ("storage_gib", storage)) if v is not None}
    _done(gated("resource.resize", allocation, params), as_json, lambda r: out.print(f"{r['allocation']}: {r['before']} → {r['after']}"))


@resource_app.command("extend")
@changes("resource.extend")
def resource_extend(allocation: str, expires: str = typer.Option(..., "--expires", help="YYYY-MM-DD"), as_json: bool = JsonOpt) -> None:
    """Keep a temporary host longer (high risk)."""
    _done(gated("resource.extend", allocation, {"expires": expires}), as_json, lambda r: out.print(f"{r['allocation']} now expires {r['expires']}"))


@resource_app.command("return")
@changes("resource.return")
def resource_return(allocation: str, as_json: bool = JsonOpt) -> None:
    """回收: give a host back; it is destroyed with its volume and the quota freed (high risk)."""
    _done(gated("resource.return", allocation), as_json, lambda r: out.print(f"{r['allocation']} returned; freed {r['freed']}"))


@resource_app.command("list")
@reads("resource.read")
def resource_list(department: Optional[str] = typer.Option(None, "--department"), all_states: bool = typer.Option(False, "--all"),
                  as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Departments' hosts (a 部门管理员 sees only their own department's)."""
    from control_plane.tenancy import service as ten

    p = principal()
    rows = ten.listing(context(), ten.scope(context(), p.name, department), all_states=all_states)
    if as_json:
        emit_json(rows)
        return
    t = Table("allocation", "department", "host", "address", "pool", "vCPU", "memory GiB", "storage GiB", "expires", "status")
    for r in rows:
        t.add_row(r["id"], r["department"], r["host"], r["address"] or "-", r["pool"], str(r["vcpu"]), str(r["memory_gib"]), str(r["storage_gib"]),
                  r["expires"] or "-", r["status"])  # fmt: skip
    out.print(t)


@resource_app.command("quota")
@reads("resource.read")
def resource_quota(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """Quota and use per department and pool (a 部门管理员: their own)."""
    from control_plane.tenancy import service as ten

    p = principal()
    rows = ten.quotas(context(), ten.scope(context(), p.name, department))
    if as_json:
        emit_json(rows)
        return
    t = Table("department", "pool", "hosts", "vCPU", "memory GiB", "storage GiB")
    for r in rows:
        q, u = r["quota"], r["used"]
        t.add_row(f"{r['name']} ({r['department']})", r["pool"], *(f"{u[k]} / {q[k]}" for k in ("hosts", "vcpu", "memory_gib", "storage_gib")))
    out.print(t)


def _scoped_table(kind: str, department: Optional[str], as_json: bool, columns: list[str], row: Any) -> None:
    from control_plane.tenancy import service as ten

    p = principal()
    dept = ten.scope(context(), p.name, department)
    if dept is None:
        raise typer.BadParameter("name the department: --department CODE")
    rows = getattr(ten, f"department_{kind}")(context(), dept)
    if as_json:
        emit_json(rows)
        return
    t = Table(*columns)
    for r in rows:
        t.add_row(*(str(x) if x is not None else "-" for x in row(r)))
    out.print(t)


@resource_app.command("hosts")
@reads("resource.read")
def resource_hosts(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """A department's hosts: its stacks' and the ones it requested (a 部门管理员: their own)."""
    _scoped_table("hosts", department, as_json, ["host", "address", "stack", "pool", "allocation"],
                  lambda r: (r["host"], r["address"], r["stack"], r["pool"], r["allocation"]))  # fmt: skip


@resource_app.command("usage")
@reads("resource.read")
def resource_usage(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """A department's figures in the newest monthly report: its hosts' use and the under-used ones (a 部门管理员: their own)."""
    from control_plane.tenancy import service as ten

    p = principal()
    dept = ten.scope(context(), p.name, department)
    if dept is None:
        raise typer.BadParameter("name the department: --department CODE")
    u = ten.department_usage(context(), dept)
    if as_json:
        emit_json(u)
        return
    if u["month"] is None:
        out.print(u["note"])
        return
    t = Table("host", "pool", "vCPU", "CPU mean", "CPU p95", "under-used")
    for h in u["hosts"]:
        t.add_row(h["host"], str(h.get("pool")), str(h.get("vcpu")), str((h.get("cpu") or {}).get("mean")), str((h.get("cpu") or {}).get("p95")),
                  "yes" if h.get("underused") else "no")  # fmt: skip
    out.print(f"{u['month']} r{u['revision']}")
    out.print(t)


@resource_app.command("backups")
@reads("resource.read")
def resource_backups(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """Restore points of a department's systems against their RPO (a 部门管理员: their own)."""
    _scoped_table("backups", department, as_json, ["source", "host", "newest restore point", "age s", "RPO s", "ok"],
                  lambda r: (r["source"], r.get("host"), (r["newest"] or "none")[:19], r["age_s"], r["rpo_s"], r.get("note") or ("yes" if r["ok"] else "NO")))  # fmt: skip


@resource_app.command("alerts")
@reads("resource.read")
def resource_alerts(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """SOC alerts about a department's hosts (a 部门管理员: their own)."""
    _scoped_table("alerts", department, as_json, ["alert", "severity", "status", "last seen", "summary"],
                  lambda r: (r["id"], r.get("severity"), r.get("status"), str(r.get("last_seen"))[:19], str(r.get("summary"))[:80]))  # fmt: skip


@resource_app.command("audit")
@reads("resource.read")
def resource_audit(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """Audit records about a department: its requests, hosts and allocations, and what its people did (a 部门管理员: their own)."""
    _scoped_table("audit", department, as_json, ["seq", "time", "actor", "operation", "target", "decision", "outcome"],
                  lambda r: (r["seq"], r["ts"][:19], r["actor"], r["operation"], r["target"], r["decision"], r["outcome"]))  # fmt: skip


@resource_app.command("reclaims")
@reads("resource.read")
def resource_reclaims(department: Optional[str] = typer.Option(None, "--department"), as_json: bool = JsonOpt) -> None:
    """Open reclamation requests (expired or under-used hosts) and the department's answer (a 部门管理员: their own)."""
    from control_plane.tenancy import service as ten

    p = principal()
    rows = ten.reclaims(context(), ten.scope(context(), p.name, department))
    if as_json:
        emit_json(rows)
        return
    t = Table("operation", "department", "host", "kind", "status", "answer", "reason")
    for r in rows:
        a = r["answer"]
        t.add_row(r["op"], r["department"], r["host"], r["kind"] or "-", r["status"], f"{a['answer']} ({a['by']}): {a['note']}" if a else "-", r["reason"])
    out.print(t)


@resource_app.command("answer")
@changes("resource.answer")
def resource_answer(op_id: str, confirm: bool = typer.Option(False, "--confirm", help="Give the host back."),
                    justify: str = typer.Option("", "--justify", help="Keep it: say why it is still needed."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Answer a reclamation request for your department's host: --confirm, or --justify "why"; the bureau's approver then decides."""
    if confirm == bool(justify):
        raise typer.BadParameter("give exactly one of --confirm or --justify '…'")
    params = {"answer": "confirm", "note": ""} if confirm else {"answer": "justify", "note": justify}
    _done(gated("resource.answer", op_id, params), as_json, lambda r: out.print(f"{r['op']}: {r['answer']} recorded for the approver"))


APPS = (("resource", resource_app),)
