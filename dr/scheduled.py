"""DR's scheduled jobs: periodic backups of due sources, the daily rotating data check, RPO status.

Backups are changes to the repository, so each goes through the gate as ``system:scheduler``
(``backup.run``, unattended by policy) and is audited like a person's; the check and the RPO
status only read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest, system_principal
from control_plane.scheduler.registry import Worker, job
from dr.check import check as do_check
from dr.service import Live, due_sources, open_repo, rpo_status

if TYPE_CHECKING:
    from control_plane.context import Context

SCHEDULER = system_principal("system:scheduler")


@job("dr.backup", description="back up every source whose interval has passed (dr.sources.*.every_s)", every_s=60)
def backups(ctx: Context) -> str:
    """One pass; a source whose backup is still running (a manual one, say) is skipped with a note, not failed."""
    done, skipped, failed = [], [], []
    for name in due_sources(ctx, open_repo(ctx)):
        try:
            view = ctx.gate.submit(SCHEDULER, OperationRequest("backup.run", name, {}, reason="scheduled backup", origin={"job": "dr.backup"}))
            r = view.result
            if r.get("skipped"):
                skipped.append(f"{name} ({r['skipped']})")
            else:
                done.append(f"{name} {r['snapshot'][:12]}")
        except GovctlError as exc:  # one failing source must not stop the others; the run fails below
            failed.append(f"{name}: {exc.message}")
    if failed:
        raise RuntimeError(f"{len(failed)} backup(s) failed: {'; '.join(failed)}")
    return f"{len(done)} backed up" + (f": {', '.join(done)}" if done else " (none due)") + (f"; skipped {', '.join(skipped)}" if skipped else "")


@job("dr.check", description="read and verify a rotating slice of the repository (dr.check_subset_pct)", cron="30 3 * * *")
def check(ctx: Context) -> str:
    """Structure in full, data in a slice that moves each day; any problem fails the run."""
    res = do_check(open_repo(ctx), subset_pct=ctx.settings.dr.check_subset_pct)
    if not res.ok:
        raise RuntimeError(f"{len(res.problems)} problem(s): {'; '.join(res.problems[:3])}")
    return f"{res.snapshots} snapshots ok; read {res.packs_read} packs ({res.subset})"


@job("dr.rpo", description="newest restore point per source against its RPO target (metrics govctl_dr_rpo_seconds)", every_s=60)
def rpo(ctx: Context) -> str:
    """Export the RPO metrics; fail the run when a source has no restore point within its target."""
    rows = rpo_status(ctx)
    late = [r for r in rows if not r["ok"]]
    if late:
        raise RuntimeError("no restore point within the RPO target for: " + ", ".join(f"{r['source']} ({r['age_s']} s > {r['rpo_s']} s)" for r in late))
    return "every source within its RPO target"


def _wal(ctx: Context) -> Any:
    return Live(ctx).start() if ctx.settings.dr.wal_streaming else None


WORKERS = (Worker("dr.wal", _wal),)
