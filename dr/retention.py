"""Retention: ``forget`` snapshots by policy, ``prune`` the data nothing references any more.

Both take the repository's exclusive lock, so a prune can never race a backup: whichever comes
second waits (or says who holds the lock). Prune writes repacked data and the new index before
removing anything, so a crash at any point leaves a repository that check passes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from dr.repo import Repository

BUCKETS: dict[str, Callable[[datetime], Any]] = {
    "daily": lambda t: t.date(),
    "weekly": lambda t: t.isocalendar()[:2],
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: t.year,
}


def plan(snaps: list[dict[str, Any]], policy: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[str]]]:
    """(keep, forget, why) for one source's snapshots: keep_last N, then the newest of each of the last N days/weeks/months/years."""
    newest_first = sorted(snaps, key=lambda s: s["time"], reverse=True)
    why: dict[str, list[str]] = {}
    for s in newest_first[: policy.keep_last]:
        why.setdefault(s["id"], []).append("last")
    for name, key in BUCKETS.items():
        n = getattr(policy, f"keep_{name}")
        seen: list[Any] = []
        for s in newest_first:
            b = key(datetime.fromisoformat(s["time"]))
            if b in seen:
                continue
            if len(seen) >= n:
                break
            seen.append(b)
            why.setdefault(s["id"], []).append(name)
    keep = [s for s in newest_first if s["id"] in why]
    forget = [s for s in newest_first if s["id"] not in why]
    return keep, forget, why


def forget(repo: Repository, policy: Any, *, source: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Apply the policy per source; returns what is kept (and why) and what is forgotten."""
    with repo.lock(exclusive=True, command="forget", wait_s=60):
        by_source: dict[str, list[dict[str, Any]]] = {}
        for s in repo.snapshots():
            if source is None or s["source"] == source:
                by_source.setdefault(s["source"], []).append(s)
        kept, gone = [], []
        for _name, snaps in sorted(by_source.items()):
            keep, drop, why = plan(snaps, policy)
            kept += [{"id": s["id"], "source": s["source"], "time": s["time"], "why": why[s["id"]]} for s in keep]
            gone += [{"id": s["id"], "source": s["source"], "time": s["time"]} for s in drop]
        if not dry_run:
            for s in gone:
                repo.backend.delete(f"snapshots/{s['id']}")
    return {"kept": kept, "forgotten": gone, "dry_run": dry_run}


def prune(repo: Repository, *, dry_run: bool = False) -> dict[str, Any]:
    """Remove packs no snapshot needs; repack the used blobs of partly used packs."""
    with repo.lock(exclusive=True, command="prune", wait_s=60):
        repo.recover_unindexed()
        idx = repo.index()
        used: set[str] = set()
        for s in repo.snapshots():
            used |= repo.referenced(s)
        by_pack: dict[str, list[str]] = {}
        for bid, ref in idx.items():
            by_pack.setdefault(ref.pack, []).append(bid)
        drop = [p for p, bids in by_pack.items() if not any(b in used for b in bids)]
        partly = [p for p, bids in by_pack.items() if any(b in used for b in bids) and not all(b in used for b in bids)]
        freed = sum(repo.backend.size(repo.pack_name(p)) for p in drop + partly if repo.backend.exists(repo.pack_name(p)))
        result = {"packs_deleted": len(drop), "packs_repacked": len(partly), "blobs_kept": len(used), "bytes_freed_before_repack": freed, "dry_run": dry_run}
        if dry_run:
            return result
        new_entries: dict[str, list[list[Any]]] = {}
        batch: list[tuple[str, str, bytes, int]] = []
        for pid in partly:
            data = repo.backend.read(repo.pack_name(pid))
            for bid in by_pack[pid]:
                if bid in used:
                    r = idx[bid]
                    batch.append((bid, r.type, data[r.offset : r.offset + r.length], r.raw_length))  # the sealed bytes, as they are
        if batch:
            npid, entries = repo.write_pack(batch)
            new_entries[npid] = entries
        gone = set(drop) | set(partly)
        keep_entries: dict[str, list[list[Any]]] = dict(new_entries)
        for bid, r in idx.items():
            if r.pack not in gone:
                keep_entries.setdefault(r.pack, []).append([bid, r.type, r.offset, r.length, r.raw_length])
        old_indexes = repo.backend.list("index/")
        new_index = repo.write_index(keep_entries) if keep_entries else None
        for name in old_indexes:  # the new index is durable; the old ones (and then the packs) can go
            if name != f"index/{new_index}":
                repo.backend.delete(name)
        for pid in gone:
            repo.backend.delete(repo.pack_name(pid))
        repo._index = None
        return result
