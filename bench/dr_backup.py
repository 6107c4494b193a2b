"""First and second (1 % changed) backup of the same ≥ 1 GiB tree: ours vs ``restic backup`` (Debian's restic), same machine, same run.

The tree (generated once, cached under ~/.cache/govctl/bench-dr/) has ~4,500 files: many small
ones, some of a few MiB, a few large, mostly incompressible with some text. Both tools back up
to a fresh local repository; then 1 % of the files are rewritten and both back up again. Also:
stored size against restic's, and our first-backup throughput as a ratio of
``openssl speed -evp sm4-ctr`` times the cores we use (a yardstick only: our SM4 is native now, OpenSSL's is generic table code).

The second backup is measured twice: as a periodic backup (a tree walk that skips unchanged
files by their metadata) and through the real-time watcher (dr/realtime.py), whose inotify
journal names the changed files so no walk is needed.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control_plane.crypto import SM2PrivateKey  # noqa: E402
from dr.files import backup  # noqa: E402
from dr.repo import Repository  # noqa: E402

CACHE = Path(os.environ.get("GOVCTL_CACHE", Path.home() / ".cache" / "govctl")) / "bench-dr"
SIZE = int(os.environ.get("BENCH_DR_BYTES", str(1100 * 1024 * 1024)))


def tree() -> Path:
    """The cached source tree (made on first use)."""
    d = CACHE / f"tree-{SIZE}"
    if (d / ".complete").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    rnd = random.Random(1)
    total, i = 0, 0
    while total < SIZE:
        kind = i % 100
        size = rnd.randint(512, 64 * 1024) if kind < 85 else rnd.randint(1 << 20, 6 << 20) if kind < 99 else rnd.randint(40 << 20, 80 << 20)
        sub = d / f"dir{i % 37:02d}" / f"sub{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 10 == 0:
            data = (f"政务数据 record {i} " * (size // 24 + 1)).encode()[:size]
        else:
            data = rnd.randbytes(size)
        (sub / f"f{i:05d}.bin").write_bytes(data)
        total += size
        i += 1
    (d / ".complete").write_text(str(total))
    return d


def change_one_percent(d: Path, seed: int) -> int:
    """Rewrite random files (new random content of the same size) until 1 % of the bytes changed; returns bytes changed."""
    files = sorted(p for p in d.rglob("f*.bin"))
    goal = sum(p.stat().st_size for p in files) // 100
    rnd = random.Random(seed)
    rnd.shuffle(files)
    changed = 0
    for p in files:
        if changed >= goal:
            break
        n = p.stat().st_size
        if n > 2 * goal:
            continue
        p.write_bytes(os.urandom(n))
        changed += n
    return changed


def du(p: Path) -> int:
    """Bytes stored under a directory."""
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def restic(repo: Path, *args: str) -> float:
    """Run restic; returns seconds."""
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo), "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
    t0 = time.perf_counter()
    subprocess.run(["restic", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def openssl_sm4_ctr() -> float:
    """Bytes/s of one core for SM4-CTR at 16 KiB blocks, by ``openssl speed``."""
    out = subprocess.run(["openssl", "speed", "-seconds", "2", "-evp", "sm4-ctr"], capture_output=True, text=True, check=True).stdout
    line = [x for x in out.splitlines() if x.lower().startswith("sm4-ctr")][-1]
    vals = re.findall(r"([\d.]+)k", line)
    return float(vals[4]) * 1000  # the 16384-byte column, in bytes/s


def main() -> None:
    """Measure and print; end with the RESULT line."""
    src = tree()
    work = Path(tempfile.mkdtemp(prefix="govctl-bench-dr-"))
    key = SM2PrivateKey.generate()
    workers = os.cpu_count() or 2
    try:
        total = du(src) - (src / ".complete").stat().st_size
        restic(work / "restic", "init")
        r1 = restic(work / "restic", "backup", str(src))
        repo = Repository.init(work / "ours", "bench", signer=key, iterations=100_000)
        t0 = time.perf_counter()
        backup(repo, src, name="bench", workers=workers)
        o1 = time.perf_counter() - t0
        from dr.realtime import Watcher

        watcher = Watcher(repo, src, "bench-rt", interval_s=3600).start()  # its own first full snapshot; then only the journal
        changed = change_one_percent(src, int(time.time()))
        r2 = restic(work / "restic", "backup", str(src))
        t0 = time.perf_counter()
        _, st2 = backup(repo, src, name="bench", workers=workers)
        o2 = time.perf_counter() - t0
        time.sleep(1.0)  # inotify events delivered
        t0 = time.perf_counter()
        watcher.ship()
        o3 = time.perf_counter() - t0
        watcher.observer.stop()
        ours_size, restic_size = du(work / "ours"), du(work / "restic")
        sm4 = openssl_sm4_ctr()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    thr = total / o1
    print(f"tree: {total / 2**30:.2f} GiB; second backup after rewriting {changed / 2**20:.0f} MiB (1 % of the bytes)")
    print(f"first backup:  ours {o1:6.1f} s   restic {r1:6.1f} s   ratio {o1 / r1:.2f}  (goal ≤ 1.0)")
    print(f"second backup: ours {o2:6.1f} s   restic {r2:6.1f} s   ratio {o2 / r2:.2f}  (goal ≤ 1.0 without the watcher); {st2.skipped_unchanged} files skipped by metadata")
    print(f"second backup with the real-time journal: ours {o3:6.2f} s   ratio {o3 / r2:.2f}  (goal ≤ 0.5)")
    print(f"stored: ours {ours_size / 2**20:.0f} MiB   restic {restic_size / 2**20:.0f} MiB   ratio {ours_size / restic_size:.3f}  (goal within 5 %)")
    print(f"throughput {thr / 1e6:.0f} MB/s = {thr / (sm4 * workers):.2f} × openssl sm4-ctr ({sm4 / 1e6:.0f} MB/s per core) × {workers} cores")
    print(f"RESULT first_backup_s={o1:.2f} restic_first_s={r1:.2f} ratio_vs_restic_first={o1 / r1:.2f} second_backup_s={o2:.2f} restic_second_s={r2:.2f} "
          f"ratio_vs_restic_second={o2 / r2:.2f} journal_second_s={o3:.2f} ratio_journal_vs_restic_second={o3 / r2:.2f} stored_ratio_vs_restic={ours_size / restic_size:.3f} throughput_mb_s={thr / 1e6:.0f} "
          f"ratio_vs_openssl_sm4_ctr_x_cores={thr / (sm4 * workers):.2f} tree_gib={total / 2**30:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
