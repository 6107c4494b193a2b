"""The audit ledger's scheduled jobs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from control_plane import metrics
from control_plane.scheduler.registry import job

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.audit")


@job("audit.checkpoint", description="sign the audit chain head if it moved", every_s=lambda s: s.audit.checkpoint_every_seconds)
def checkpoint(rt: Context) -> str:
    """Sign a checkpoint over the current head (no-op when already covered)."""
    cp = rt.ledger.checkpoint()
    return f"signed checkpoint at record {cp['seq']}" if cp else "head already covered"


@job("audit.mirror", description="mirror new audit records to Elasticsearch", every_s=lambda s: s.audit.mirror_every_seconds)
def mirror(rt: Context) -> str:
    """Copy records after the mirror cursor into the audit index; raise if Elasticsearch refused them."""
    from control_plane.audit.mirror import mirror as do_mirror

    res = do_mirror(rt.ledger, rt.es, rt.settings.audit.es_index, feeds=rt.wiring.audit_feeds)
    metrics.AUDIT_MIRROR_LAG.set(max(0, rt.ledger.head()[0] - res.last_seq))
    if res.error:
        raise RuntimeError(f"mirrored {res.sent}, stopped at {res.last_seq}: {res.error}")
    return f"mirrored {res.sent} records (cursor {res.last_seq})"


@job("audit.verify", description="verify the whole audit chain and its checkpoints", cron="30 3 * * *")
def verify(rt: Context) -> str:
    """Prove the chain; a failure fails the run and sets govctl_audit_chain_broken to 1."""
    rep = rt.ledger.verify()
    metrics.AUDIT_CHAIN_BROKEN.set(0 if rep.ok else 1)
    metrics.AUDIT_LAST_VERIFY.set_to_current_time()
    if not rep.ok:
        log.error("audit chain verification failed at record %s: %s", rep.first_bad, rep.problem)
        raise RuntimeError(f"audit chain broken at record {rep.first_bad}: {rep.problem}")
    return f"{rep.records} records and {rep.checkpoints} checkpoints verified in {rep.seconds}s"
