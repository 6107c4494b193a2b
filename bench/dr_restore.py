"""Restore throughput against ``restic restore`` of the same tree, and the RTO of a drill on a ≥ 1 GiB PostgreSQL database.

1. The ≥ 1 GiB tree of bench/dr_backup.py (cached) is backed up by both tools into fresh
   repositories, then restored by both into empty directories; ratio = restic's time / ours
   (goal ≥ 1.0: at least as fast).
2. A bench stack of local pools is deployed, a drill runs with its primary filled to ≥ 1 GiB
   (pgbench), and its measured RTO (loss → verified service on the backup pool) and RPO are
   printed; the stack is failed back and destroyed afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from dr_backup import restic, tree  # noqa: E402
from control_plane.config import load  # noqa: E402
from control_plane.crypto import SM2PrivateKey  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from dr.files import backup, restore  # noqa: E402
from dr.repo import Repository  # noqa: E402

FILL_MB = int(os.environ.get("BENCH_DRILL_MB", "1100"))
STACK = {
    "target": "local", "department": "city-big-data-bureau", "classification": "sensitive",
    "local_bridge": "govbbr0", "local_gateway": "10.79.0.1/16", "local_prefix": "gb",
    "pools": {"primary": {"role": "primary", "zone": "local-a", "cidr": "10.79.1.0/24", "tiers": {"data": {"count": 1, "data_tier": True}}},
              "backup": {"role": "backup", "zone": "local-b", "cidr": "10.79.2.0/24", "tiers": {"data": {"count": 1, "data_tier": True}}}},
}  # fmt: skip


def restore_ratio(work: Path) -> tuple[float, float, int]:
    """(our restore s, restic restore s, bytes)."""
    src = tree()
    repo = Repository.init(work / "ours", "bench", signer=SM2PrivateKey.generate(), iterations=100_000)
    sid, st = backup(repo, src, name="bench")
    restic(work / "restic", "init")
    restic(work / "restic", "backup", str(src))
    os.sync()
    t0 = time.perf_counter()
    restore(repo, sid, work / "out-ours")
    os.sync()
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    restic(work / "restic", "restore", "latest", "--target", str(work / "out-restic"))
    os.sync()
    theirs = time.perf_counter() - t0
    return ours, theirs, st.bytes


def drill_rto(work: Path) -> dict:
    """A drill on a filled primary, on a bench stack of its own."""
    from control_plane.deploy import service as deploy
    from dr import drill

    base = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(base)
    started = [s.name for s in sup.status(["postgres"]) if s.health != "healthy"]
    cfg = {"var_dir": str(work / "var"), "deploy": {"stacks": {"bench": STACK}}, "crypto": {"kdf_iterations": 100_000},
           "services": {"postgres": {"port": base.services.postgres.port}}}  # fmt: skip
    (work / "govctl.yaml").write_text(yaml.safe_dump(cfg))
    rt = context_for(load(work / "govctl.yaml"))
    deploy.up(rt, "bench")
    try:
        rep = drill.run(rt, stack="bench", canary_s=3.0, by="bench", fill_mb=FILL_MB)
        drill.cleanup(rt, rep["drill"], by="bench")
        return rep
    finally:
        deploy.destroy(rt, "bench")
        if started:
            sup.down(started)


def main() -> None:
    """Measure and print; end with the RESULT line."""
    work = Path(tempfile.mkdtemp(prefix="govctl-bench-restore-"))
    try:
        ours, theirs, nbytes = restore_ratio(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"restore of {nbytes / 2**30:.2f} GiB: ours {ours:.1f} s ({nbytes / ours / 1e6:.0f} MB/s), restic {theirs:.1f} s; ratio restic/ours {theirs / ours:.2f} (goal ≥ 1.0)")
    work2 = Path(tempfile.mkdtemp(prefix="govctl-bench-drill-", dir="/var/tmp"))
    try:
        rep = drill_rto(work2)
    finally:
        shutil.rmtree(work2, ignore_errors=True)
    print(f"drill on a {rep['database_bytes'] / 2**30:.2f} GiB database: {rep['status']}, RTO {rep['rto_s']:.1f} s, RPO {rep['rpo_s']} s")
    print(f"RESULT restore_s={ours:.2f} restic_restore_s={theirs:.2f} ratio_restic_vs_ours={theirs / ours:.2f} restore_mb_s={nbytes / ours / 1e6:.0f} "
          f"drill_db_gib={rep['database_bytes'] / 2**30:.2f} drill_rto_s={rep['rto_s']:.1f} drill_rpo_s={rep['rpo_s']}")  # fmt: skip


if __name__ == "__main__":
    main()
