"""Backups and disaster recovery commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, principal,
                                  reads)  # fmt: skip
from control_plane.deploy.cli import StackOpt


dr_app = typer.Typer(help="Backups and disaster recovery: backup, snapshots, restore, restore-pg, check, forget, prune, status, drill, destroy.",
                     no_args_is_help=True)  # fmt: skip


def _dr_done(view: Any, as_json: bool, fmt: Any) -> None:
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        fmt(view.result)


@dr_app.command("backup")
@changes("backup.run")
def dr_backup(source: str = typer.Argument(..., help="A source from dr.sources."), as_json: bool = JsonOpt) -> None:
    """Back up a configured source now (files: a snapshot of the tree; postgres: a base backup)."""
    with err.status(f"backing up {source}…", spinner="dots"):
        view = gated("backup.run", source)

    def fmt(r: dict[str, Any]) -> None:
        if r.get("skipped"):
            out.print(f"{source}: skipped — {r['skipped']}")
            return
        st = r["stats"]
        out.print(f"{source}: snapshot {r['snapshot'][:16]} in {r['seconds']:.1f} s — {st.get('files', 0)} files, {st.get('bytes', 0) / 1e6:.1f} MB read, "
                  f"{st.get('skipped_unchanged', 0)} unchanged skipped, {st.get('new_bytes', 0) / 1e6:.1f} MB new, {st.get('stored_bytes', 0) / 1e6:.1f} MB stored"
                  + "".join(f"; copied to {c['repository']}" for c in r.get("copies", [])))  # fmt: skip

    _dr_done(view, as_json, fmt)


@dr_app.command("snapshots")
@reads("dr.read")
def dr_snapshots(source: Optional[str] = typer.Option(None, "--source"), as_json: bool = JsonOpt) -> None:
    """Snapshots in the repository (signatures verified), oldest first."""
    from dr.service import open_repo

    principal()
    snaps = [s for s in open_repo(context(), create=False).snapshots() if source is None or s["source"] == source]
    if as_json:
        emit_json(snaps)
        return
    t = Table("id", "source", "time (UTC)", "restore point", "tags", "files", "MB", "new MB")
    for s in snaps:
        st = s.get("stats", {})
        t.add_row(s["id"][:16], s["source"], s["time"][:19], s.get("restore_point", "")[:19], ",".join(s.get("tags", [])), str(st.get("files", "")),
                  f"{st.get('bytes', 0) / 1e6:.1f}", f"{st.get('new_bytes', 0) / 1e6:.1f}")  # fmt: skip
    out.print(t)


@dr_app.command("restore")
@changes("dr.restore")
def dr_restore(snapshot: str, target: Path = typer.Option(..., "--target", help="Where to restore (created if missing)."),
               include: list[str] = typer.Option([], "--include", help="Only these paths (repeatable)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Restore a files snapshot (contents, modes, times, symlinks; every file's SM3 checked). High risk: needs an approver."""
    view = gated("dr.restore", snapshot, {"kind": "files", "target": str(target.resolve()), "include": include})
    _dr_done(view, as_json, lambda r: out.print(f"restored {r['files']} files ({r['bytes'] / 1e6:.1f} MB) from {r['snapshot'][:16]} into {r['target']}, all SM3-verified"))


@dr_app.command("restore-pg")
@changes("dr.restore")
def dr_restore_pg(source: str = typer.Option("state-db", "--source"), to: str = typer.Option("latest", "--to", help="ISO time or latest."),
                  target: Path = typer.Option(..., "--target", help="An empty directory for the restored cluster."),
                  host: Optional[str] = typer.Option(None, "--host", help="A department's cluster: bring it up on this backup-pool host."),
                  as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Bring up a PostgreSQL cluster at a point in time (base backup + streamed WAL). High risk: needs an approver."""
    params: dict[str, Any] = {"kind": "postgres", "target": str(target.resolve()), "to": to}
    if host:
        params["host"] = host
    view = gated("dr.restore", source, params)
    _dr_done(view, as_json, lambda r: out.print(f"{source} restored to {r['to']} in {r['target']}; running on {r.get('host')}:{r.get('port')} "
                                                f"(base {r['base'][:16]} + {r['wal_snapshots']} WAL shipments)"))  # fmt: skip


@dr_app.command("credential")
@changes("dr.credential")
def dr_credential(source: str = typer.Argument(..., help="A PostgreSQL source on a pool host (<system>.<data>)."), as_json: bool = JsonOpt) -> None:
    """Store the replication role's password a department gave you, read from standard input (never an argument), in a 0600 file."""
    import sys

    from dr.access import stage_credential

    principal()  # who is asking, before anything is read or written
    secret = typer.prompt("password", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    view = gated("dr.credential", source, {"staged": stage_credential(context(), secret)})
    _dr_done(view, as_json, lambda r: out.print(f"stored {r['source']}'s password in {r['file']} (0600)"))


@dr_app.command("check")
@reads("dr.read")
def dr_check(read_data: bool = typer.Option(False, "--read-data", help="Read and verify every pack."),
             subset: Optional[float] = typer.Option(None, "--read-data-subset", help="Read N percent of the packs (rotating)."),
             as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Verify the repository: signatures, trees, index and packs; with data reads, every blob's id. Exit 1 on any problem."""
    from dr.check import check
    from dr.service import open_repo

    principal()
    res = check(open_repo(context(), create=False), read_data=read_data, subset_pct=subset)
    if as_json:
        emit_json(res.as_dict())
    else:
        out.print(f"{res.snapshots} snapshots, {res.trees} trees, {res.blobs_referenced} blobs referenced, {res.packs} packs"
                  + (f"; read {res.packs_read} packs / {res.blobs_read} blobs" + (f" (slice {res.subset})" if res.subset else "") if res.packs_read else ""))  # fmt: skip
        for p in res.problems:
            err.print(f"[red]problem:[/red] {p}", highlight=False)
    if not res.ok:
        raise typer.Exit(1)


@dr_app.command("forget")
@changes("backup.delete")
def dr_forget(source: Optional[str] = typer.Option(None, "--source"), dry_run: bool = typer.Option(False, "--dry-run"), as_json: bool = JsonOpt) -> None:
    """Apply the retention policy (dr.retention): keep last/daily/weekly/monthly/yearly, forget the rest. High risk."""
    view = gated("backup.delete", source or "*", {"dry_run": dry_run})
    _dr_done(view, as_json, lambda r: out.print(f"kept {len(r['kept'])}, {'would forget' if r['dry_run'] else 'forgot'} {len(r['forgotten'])} snapshots"))


@dr_app.command("prune")
@changes("backup.prune")
def dr_prune(dry_run: bool = typer.Option(False, "--dry-run"), as_json: bool = JsonOpt) -> None:
    """Delete data no snapshot references (waits for a running backup). Critical: two approvers."""
    view = gated("backup.prune", "repository", {"dry_run": dry_run})
    _dr_done(view, as_json, lambda r: out.print(f"{r['packs_deleted']} packs deleted, {r['packs_repacked']} repacked, ~{r['bytes_freed_before_repack'] / 1e6:.1f} MB freed"))


@dr_app.command("drill")
@changes("dr.drill")
def dr_drill(stack: str = StackOpt, canary_seconds: float = typer.Option(5.0, "--canary-seconds", help="How long canaries are written before the loss."),
             cleanup: Optional[str] = typer.Option(None, "--cleanup", help="Fail back after drill ID instead of running one."),
             system: Optional[str] = typer.Option(None, "--system", help="A registered system (code or name, e.g. 人口库): judge RPO/RTO against its targets."),
             as_json: bool = JsonOpt) -> None:  # fmt: skip
    """A disaster-recovery drill on the local pools: lose the primary, restore and promote on the backup pool, measure RPO/RTO. High risk."""
    params: dict[str, Any] = {"cleanup": cleanup} if cleanup else {"canary_s": canary_seconds, **({"system": system} if system else {})}
    with err.status("drill running…" if not cleanup else "failing back…", spinner="dots"):
        view = gated("dr.drill", stack, params)

    def fmt(r: dict[str, Any]) -> None:
        if cleanup:
            out.print(f"drill {r['drill']}: failback {r['failback']}, primary link {r['primary_link']}, work files removed")
            return
        c = r["canaries"]
        out.print(f"drill {r['drill']}: [bold]{r['status']}[/bold] — RPO {r['rpo_s']} s, RTO {r['rto_s']} s; canaries {c['recovered']}/{c['written']} recovered, SM3 {'match' if c['checksum_sm3_match'] else 'MISMATCH'}")
        if r.get("system"):
            t = r["system"]["targets"]
            out.print(f"  system {r['system']['name']} ({r['system']['code']}): targets RPO ≤ {t['rpo_s']} s, RTO ≤ {t['rto_s']} s — "
                      + ("met" if not r["targets_missed"] else "missed: " + "; ".join(r["targets_missed"])))  # fmt: skip
        out.print(f"  report: {r['files']['html']} (signed JSON {r['files']['json']}); fail back with: govctl dr drill --cleanup {r['drill']}")

    _dr_done(view, as_json, fmt)


@dr_app.command("drills")
@reads("dr.read")
def dr_drills(as_json: bool = JsonOpt) -> None:
    """Drills run so far, newest first, with their measured RPO and RTO."""
    from dr.drill import list_drills

    principal()
    rows = list_drills(context())
    if as_json:
        emit_json(rows)
        return
    t = Table("drill", "stack", "started (UTC)", "RPO s", "RTO s", "status", "failed back", "report")
    for d in rows:
        t.add_row(d["id"], d["stack"], d["started"][:19], f"{d['rpo_s']}", f"{d['rto_s']}", d["status"], (d["cleaned"] or "-")[:19], d["path"] + "/report.html")
    out.print(t)


@dr_app.command("destroy")
@changes("dr.destroy")
def dr_destroy(system: str = typer.Option(..., "--system", help="A registered system (code or name, e.g. 人口库) whose stack is gone."),
               as_json: bool = JsonOpt) -> None:  # fmt: skip
    """数据安全销毁: destroy a system's backups in every repository, with a signed record. Critical: two approvers."""
    view = gated("dr.destroy", system, {})
    _dr_done(view, as_json, lambda r: out.print(f"destroyed {r['snapshots_destroyed']} snapshots of {r['system']} in {r['repositories']} "
                                                f"repositories; record {r['record']} (SM3 {r['record_sm3'][:16]}…, SM2-signed)"))  # fmt: skip


@dr_app.command("destructions")
@reads("dr.read")
def dr_destructions(as_json: bool = JsonOpt) -> None:
    """Destruction records (数据安全销毁), newest first."""
    from dr.destroy import records

    principal()
    rows = records(context())
    if as_json:
        emit_json(rows)
        return
    t = Table("destruction", "at (UTC)", "system", "requested by", "approved by", "snapshots", "record")
    for r in rows:
        t.add_row(r["destruction"], r["at"][:19], f"{r['system_name']} ({r['system']})", r["requested_by"], ", ".join(r["approvers"]), str(r["snapshots"]),
                  r["record"])  # fmt: skip
    out.print(t)


@dr_app.command("status")
@reads("dr.read")
def dr_status(as_json: bool = JsonOpt) -> None:
    """Per source: the newest restore point and its age against the RPO target."""
    from dr.service import open_repo, rpo_status

    principal()
    rows = rpo_status(context(), open_repo(context()))
    if as_json:
        emit_json(rows)
        return
    t = Table("source", "type", "host", "newest restore point", "age s", "RPO target s", "ok")
    for r in rows:
        t.add_row(r["source"], r["type"], r.get("host") or "this host", (r["newest"] or "none")[:19], "-" if r["age_s"] is None else f"{r['age_s']:.0f}",
                  str(r["rpo_s"]), r["note"] if r.get("note") else "yes" if r["ok"] else "[red]NO[/red]")  # fmt: skip
    out.print(t)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


APPS = (("dr", dr_app),)
