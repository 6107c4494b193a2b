"""Copies of snapshots to further repositories (多副本), verified, without decrypting file data.

A copy repository shares the primary's master key (wrapped under its own passphrase and
repository id), so blob ids and ciphertexts are the same in both: packs are copied byte for
byte and checked by their SM3 names; only trees are decrypted (to know which blobs a snapshot
needs). The snapshot file is copied as is and its SM2 signature is verified on both sides.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dr.repo import RepoError, Repository


def init_copy(src: Repository, dest: Path, passphrase: str, *, iterations: int = 200_000, backend: Any = None) -> Repository:
    """Create a repository at ``dest`` (its objects in ``backend`` when given) holding the same master key as ``src``."""
    return Repository.init(dest, passphrase, signer=src.signer, iterations=iterations, copy_of=src, backend=backend)


def _copy_pack(src: Repository, dst: Repository, pid: str, bandwidth_mib_s: float | None) -> int:
    """Copy one pack in 1 MiB ranges (throttled), check it against its SM3 name, then store it once."""
    name = src.pack_name(pid)
    total = src.backend.size(name)
    data = bytearray()
    t0 = time.monotonic()
    while len(data) < total:
        data += src.backend.read_range(name, len(data), min(1 << 20, total - len(data)))
        if bandwidth_mib_s:
            ahead = len(data) / (bandwidth_mib_s * (1 << 20)) - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    if src.pack_digest(bytes(data)) != pid:
        raise RepoError(f"pack {pid[:16]}… in the source repository does not match its name; not copied", hint="run govctl dr check --read-data")
    dst.backend.write_once(name, bytes(data))
    return len(data)


def copy_snapshots(src: Repository, dst: Repository, sids: list[str] | None = None, *, bandwidth_mib_s: float | None = None) -> dict[str, Any]:
    """Copy snapshots (default: all) that ``dst`` lacks; returns what was copied."""
    if (src.keys.enc, src.keys.ident) != (dst.keys.enc, dst.keys.ident):
        raise RepoError(f"{dst.root} has a different master key: it is not a copy of {src.root}", hint="create copy targets with govctl (dr.copies)")
    copied, packs, nbytes = [], 0, 0
    with src.lock(exclusive=False, command="copy (source)", wait_s=60), dst.lock(exclusive=True, command="copy (target)", wait_s=60):
        have = set(dst.snapshot_ids())
        sidx, didx = src.index(), dst.index()
        entries: dict[str, list[list[Any]]] = {}  # pack → its blobs, for the copies' index
        for b, r in sidx.items():
            entries.setdefault(r.pack, []).append([b, r.type, r.offset, r.length, r.raw_length])
        for sid in sids if sids is not None else src.snapshot_ids():
            snap = src.load_snapshot(sid)  # the signature is checked before anything moves
            if snap["id"] in have:
                continue
            need = {sidx[b].pack for b in src.referenced(snap) if b not in didx}
            for pid in sorted(need):
                if not dst.backend.exists(dst.pack_name(pid)):
                    nbytes += _copy_pack(src, dst, pid, bandwidth_mib_s)
                    packs += 1
            if need:
                dst.write_index({pid: entries[pid] for pid in need})
            dst.backend.write_once(f"snapshots/{snap['id']}", src.backend.read(f"snapshots/{snap['id']}"))
            dst.load_snapshot(snap["id"])  # and verified again where it landed
            copied.append(snap["id"])
    return {"snapshots": copied, "packs": packs, "bytes": nbytes}
