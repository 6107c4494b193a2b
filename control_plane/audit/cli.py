"""The ledger's and the platform key's commands."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, reads, when)  # fmt: skip

audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="The platform's national-crypto keys.", no_args_is_help=True)

@audit_app.command("verify")
@reads("audit.read")
def audit_verify(pin: Optional[str] = typer.Option(None, "--pin", help="The platform key id you hold (from first start or a monthly report)."),
                 as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Prove the whole chain and every checkpoint against the pinned key; exit 1 and name the first bad record if not."""
    rt = context()
    rep = rt.ledger.verify(pin=pin or rt.settings.audit.pinned_key_id)
    if as_json:
        emit_json(rep.as_dict())
    elif rep.ok:
        out.print(f"[green]ok[/green]: {rep.records} records, {rep.checkpoints} checkpoints ({rep.anchors} anchored), head {rep.head_seq} {rep.head_hash[:16]}…, {rep.seconds}s")
        out.print(f"keys: {' → '.join(rep.keys)} ({'pinned' if rep.pinned else 'NOT pinned: pass --pin'})")
        ext = rep.external_anchor
        out.print(f"newest external anchor: {ext['id']} at record {ext['seq']}; {rep.records_after_external_anchor} records after it are vouched for by this host only"
                  if ext else f"no external anchor yet: all {rep.records_after_external_anchor} records are vouched for by this host only")
    else:
        err.print(f"[red]BROKEN[/red] at record {rep.first_bad}: {rep.problem}")
    for n in rep.notes if not as_json else []:
        err.print(f"note: {n}")
    if not rep.ok:
        raise typer.Exit(1)


@audit_app.command("show")
@reads("audit.read")
def audit_show(
    actor: Optional[str] = typer.Option(None, help="Only this actor."),
    operation: Optional[str] = typer.Option(None, help="Only this operation; 'deploy.*' matches a prefix."),
    target: Optional[str] = typer.Option(None, help="Only this target."),
    since: Optional[str] = typer.Option(None, help="From this time (ISO, or an age: 30m, 2h, 7d)."),
    until: Optional[str] = typer.Option(None, help="Before this time."),
    limit: int = typer.Option(50, min=1, max=10000),
    as_json: bool = JsonOpt,
) -> None:
    """Audit records, newest first, filtered by actor, operation, target and time."""
    recs = context().ledger.query(actor=actor, operation=operation, target=target, since=when(since), until=when(until), limit=limit)
    if as_json:
        emit_json([r.as_dict() for r in recs])
        return
    t = Table("seq", "time (UTC)", "actor", "role", "source", "operation", "target", "decision", "outcome")
    for r in recs:
        t.add_row(str(r.seq), r.ts[:19], r.actor, r.role, r.source, r.operation, r.target, r.decision, r.outcome)
    out.print(t)


@audit_app.command("checkpoint")
@changes("audit.checkpoint")
def audit_checkpoint(as_json: bool = JsonOpt) -> None:
    """Sign a checkpoint over the chain head now."""
    view = gated("audit.checkpoint", "audit")
    seq = view.result["checkpoint"]
    if as_json:
        emit_json(view.result)
    else:
        out.print(f"signed checkpoint at record {seq}" if seq else "the head is already covered by a checkpoint")




@keys_app.command("rotate")
@changes("keys.rotate")
def keys_rotate(reason: str = typer.Option(..., "--reason", help="Why the key changes (critical: two approvers)."), as_json: bool = JsonOpt) -> None:
    """Replace the platform SM2 key: the old key signs the hand-over into the ledger, then the new key signs from there on."""
    view = gated("keys.rotate", "platform", {}, reason=reason)
    emit_json(view.as_dict()) if as_json else (pending_note(view) or out.print(f"platform key {view.result['old_key_id']} → {view.result['new_key_id']}"))


@keys_app.command("show")
@reads("keys.read")
def keys_show(as_json: bool = JsonOpt) -> None:
    """The platform SM2 public key (PEM) and its key id."""
    pub = context().signer.public_key
    if as_json:
        emit_json({"key_id": pub.key_id, "public_key_hex": pub.to_hex(), "pem": pub.to_pem()})
    else:
        out.print(f"key id: {pub.key_id}\n{pub.to_pem()}", highlight=False, end="")


APPS = (("audit", audit_app), ("keys", keys_app),)
