"""DR's scheduled jobs: periodic backups of due sources, the daily rotating data check, RPO status."""

from __future__ import annotations

from typing import Any

from control_plane.scheduler.registry import job


@job("dr.backup", description="back up every source whose interval has passed (dr.sources.*.every_s)", every_s=60)
def backups(rt: Any) -> str:
    """One pass; the job never runs twice at once (max_instances 1) and the repository lock keeps writers apart."""
    from dr.service import backup_source, due_sources, open_repo

    done, failed = [], []
    for name in due_sources(rt, open_repo(rt)):
        try:
            r = backup_source(rt, name)
            done.append(f"{name} {r['snapshot'][:12]}")
        except Exception as exc:  # noqa: BLE001 - one failing source must not stop the others; the run fails below
            failed.append(f"{name}: {getattr(exc, 'message', exc)}")
    if failed:
        raise RuntimeError(f"{len(failed)} backup(s) failed: {'; '.join(failed)}")
    return f"{len(done)} backed up" + (f": {', '.join(done)}" if done else " (none due)")


@job("dr.check", description="read and verify a rotating slice of the repository (dr.check_subset_pct)", cron="30 3 * * *")
def check(rt: Any) -> str:
    """Structure in full, data in a slice that moves each day; any problem fails the run."""
    from dr.check import check as do_check
    from dr.service import open_repo

    res = do_check(open_repo(rt), subset_pct=rt.settings.dr.check_subset_pct)
    if not res.ok:
        raise RuntimeError(f"{len(res.problems)} problem(s): {'; '.join(res.problems[:3])}")
    return f"{res.snapshots} snapshots ok; read {res.packs_read} packs ({res.subset})"


@job("dr.rpo", description="newest restore point per source against its RPO target (metrics govctl_dr_rpo_seconds)", every_s=60)
def rpo(rt: Any) -> str:
    """Export the RPO metrics; fail the run when a source has no restore point within its target."""
    from dr.service import rpo_status

    rows = rpo_status(rt)
    late = [r for r in rows if not r["ok"]]
    if late:
        raise RuntimeError("no restore point within the RPO target for: " + ", ".join(f"{r['source']} ({r['age_s']} s > {r['rpo_s']} s)" for r in late))
    return "every source within its RPO target"
