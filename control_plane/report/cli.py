"""The monthly report's commands."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, principal,
                                  reads)  # fmt: skip


report_app = typer.Typer(help="The monthly report to the provincial authority: build, show, verify, submit, list.", no_args_is_help=True)
MonthOpt = typer.Option(..., "--month", "-m", help="YYYY-MM (Asia/Shanghai calendar month).")


@report_app.command("build")
@changes("report.build")
def report_build(month: str = MonthOpt, correct: Optional[str] = typer.Option(None, "--correct", help="Build a correcting revision; say why (needs an approver's sign-off)."),
                 as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Build, validate, sign and store a month: JSON, Chinese HTML/PDF, .xlsx. Immutable once built."""
    params: dict[str, Any] = {"correction": True, "reason": correct} if correct else {}
    with err.status(f"building the report for {month}…", spinner="dots"):
        view = gated("report.build", month, params, reason=correct or "")
    if as_json:
        emit_json(view.as_dict())
        return
    if pending_note(view):
        return
    r = view.result
    out.print(f"{month} revision {r['revision']}: {r['path']}  (SM3 {r['digest_sm3'][:16]}…, data coverage {r['coverage_pct']:.2f}%)")
    out.print("  report.json (signed: report.sig.json), report.html, report.pdf, report.xlsx")
    if r.get("provisional"):
        err.print("[yellow]the month has not ended: this revision is provisional and will not be submitted; the final one is built after the month ends[/yellow]")


@report_app.command("show")
@reads("report.read")
def report_show(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """A built month's main figures (or the whole JSON with --json)."""
    from control_plane.report import store

    principal()
    b = store.get(context(), month, revision)
    doc = store.load(b)
    if as_json:
        emit_json(doc)
        return
    out.print(f"[bold]{month} revision {b.revision}{'' if doc.get('final', True) else ' (provisional)'}[/bold] built {b.created[:19]} by {b.built_by}; coverage {doc['coverage']['prometheus_pct']:.2f}%"
              + (f"; corrects r{doc['supersedes']['revision']}: {doc['supersedes']['reason']}" if doc.get("supersedes") else ""))  # fmt: skip
    t = Table("pool", "hosts", "vCPU", "CPU mean", "CPU p95", "mem mean", "disk mean", "availability %")

    def pc(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    for p in doc["pools"]:
        t.add_row(p["pool"], str(p["hosts"]), f"{p['vcpu']['allocated'] or 0:g}", pc(p["vcpu"]["utilisation"]["mean"]), pc(p["vcpu"]["utilisation"]["p95"]),
                  pc(p["memory_gib"]["utilisation"]["mean"]), pc(p["storage_gib"]["utilisation"]["mean"]),
                  "-" if p["availability_pct"] is None else f"{p['availability_pct']:.3f}")  # fmt: skip
    out.print(t)
    sec = doc["security"]
    out.print(f"alerts {(sec['alerts'] or {}).get('total', '-')}, refused operations {sec['refused_operations']} (blocked by the SOC {sec['blocked_operations']}); "
              f"under-used hosts {len(doc['underused'])}; files in {b.path}")  # fmt: skip
    for n in doc["notes"]:
        out.print(f"  note: {n}")


@report_app.command("verify")
@reads("report.read")
def report_verify(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """Re-hash the stored report, check its SM2 signature and the schema; exit 1 if anything is off."""
    from control_plane.report import store

    principal()
    rt = context()
    res = store.verify_revision(rt, store.get(rt, month, revision))
    archived = f"; the archived copy in {res['archived']} matches" if res.get("archived") else ""
    emit_json(res) if as_json else out.print(f"{month} r{res['revision']}: signature valid (key {res['key_id']}), SM3 {res['digest_sm3'][:16]}… matches, "
                                             f"schema valid{archived}")  # fmt: skip


@report_app.command("submit")
@changes("report.submit")
def report_submit(month: str = MonthOpt, revision: Optional[int] = None, as_json: bool = JsonOpt) -> None:
    """Seal a built revision for the province and POST it; retried with back-off until the receipt comes back."""
    view = gated("report.submit", month, {"revision": revision} if revision else {})
    if as_json:
        emit_json(view.as_dict())
        return
    if pending_note(view):
        return
    r = view.result
    if r["status"] == "delivered":
        out.print(f"{month} r{r['revision']} delivered to {r['endpoint']}: receipt {r['receipt_id']}")
    else:
        err.print(f"[yellow]{month} r{r['revision']}: {r['status']} after {r['attempts']} attempt(s): {r['last_error']}[/yellow]")
        if r["status"] == "pending":
            err.print(f"it stays in the outbox; the report.deliver job retries it from {r['next_attempt']}")
        raise typer.Exit(1)


@report_app.command("list")
@reads("report.read")
def report_list(as_json: bool = JsonOpt) -> None:
    """Built revisions and their deliveries."""
    from control_plane.report import deliver, store

    principal()
    rt = context()
    revs = store.all_revisions(rt)
    dels = {(d["month"], d["revision"]): d for d in deliver.list_deliveries(rt)}
    if as_json:
        emit_json([{**b.as_dict(), "delivery": dels.get((b.month, b.revision))} for b in revs])
        return
    t = Table("month", "rev", "built (UTC)", "by", "coverage %", "SM3", "delivery", "receipt")
    for b in revs:
        d = dels.get((b.month, b.revision))
        t.add_row(b.month, str(b.revision), b.created[:19], b.built_by, f"{b.coverage_pct or 0:.2f}", b.digest_sm3[:12],
                  f"{d['status']} ({d['attempts']})" if d else "-", ((d or {}).get("receipt") or {}).get("receipt", {}).get("receipt_id", "-"))  # fmt: skip
    out.print(t)


APPS = (("report", report_app),)
