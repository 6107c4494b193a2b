"""Checking a repository: structure always; data fully or by a rotating subset. Every problem names its object."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from control_plane.crypto import CryptoError
from dr.repo import RepoError, Repository


@dataclass
class CheckResult:
    """What check found."""

    snapshots: int = 0
    trees: int = 0
    blobs_referenced: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    unindexed_packs: int = 0
    subset: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {**self.__dict__, "ok": self.ok}


def check(repo: Repository, *, read_data: bool = False, subset_pct: float | None = None) -> CheckResult:
    """Structure: snapshots (signature, manifest), trees, index ↔ packs. Data: every (or a rotating N % of) pack read and verified."""
    res = CheckResult()
    with repo.lock(exclusive=False, command="check", wait_s=30):
        try:
            idx = repo.index()
        except CryptoError as exc:
            res.problems.append(exc.message)
            return res
        on_disk = repo.packs_on_disk()
        res.packs = len(on_disk)
        referenced_packs = {r.pack for r in idx.values()}
        for pid in sorted(referenced_packs - on_disk):
            res.problems.append(f"pack {pid} is missing (listed in the index)")
        res.unindexed_packs = len(on_disk - referenced_packs)
        seen_trees: set[str] = set()
        refs: set[str] = set()
        for sid in repo.snapshot_ids():
            try:
                snap = repo.load_snapshot(sid)
            except (CryptoError, RepoError, ValueError, KeyError) as exc:
                res.problems.append(f"snapshot {sid}: {getattr(exc, 'message', exc)}")
                continue
            res.snapshots += 1
            stack = [snap["tree"]]
            while stack:
                tid = stack.pop()
                if tid in seen_trees:
                    continue
                seen_trees.add(tid)
                refs.add(tid)
                if tid not in idx:
                    res.problems.append(f"snapshot {sid[:16]}…: tree {tid} is not in the index (missing data)")
                    continue
                try:
                    tree = repo.tree(tid)
                except (CryptoError, RepoError, ValueError) as exc:
                    res.problems.append(f"snapshot {sid[:16]}…: tree {tid[:16]}…: {getattr(exc, 'message', exc)}")
                    continue
                for node in tree["nodes"]:
                    if node["type"] == "dir":
                        stack.append(node["subtree"])
                    elif node["type"] == "file":
                        for bid in node["content"]:
                            refs.add(bid)
                            if bid not in idx:
                                res.problems.append(f"snapshot {sid[:16]}…: {node['name']}: blob {bid} is not in the index (missing data)")
                            elif idx[bid].pack not in on_disk:
                                res.problems.append(f"snapshot {sid[:16]}…: {node['name']}: blob {bid[:16]}… is in missing pack {idx[bid].pack}")
        res.trees, res.blobs_referenced = len(seen_trees), len(refs)
        if read_data or subset_pct:
            packs = sorted(on_disk & referenced_packs)
            if subset_pct and not read_data:
                packs, res.subset = _rotating_subset(repo, packs, subset_pct)
            by_pack: dict[str, list[tuple[str, Any]]] = {}
            for bid, ref in idx.items():
                by_pack.setdefault(ref.pack, []).append((bid, ref))
            for pid in packs:
                _read_pack(repo, pid, by_pack.get(pid, []), res)
    return res


def _rotating_subset(repo: Repository, packs: list[str], pct: float) -> tuple[list[str], str]:
    """Packs whose id falls in the next N % slice of the id space; the cursor moves on each run."""
    state = repo.root / "state" / "check-cursor.json"
    try:
        start = float(json.loads(state.read_text())["next"])
    except (OSError, ValueError, KeyError):
        start = 0.0
    pct = max(0.1, min(100.0, pct))
    end = start + pct
    chosen = [p for p in packs if start <= (int(p[:8], 16) / 0x100000000 * 100) < end or (end > 100 and (int(p[:8], 16) / 0x100000000 * 100) < end - 100)]
    state.parent.mkdir(exist_ok=True)
    state.write_text(json.dumps({"next": end % 100}))
    return chosen, f"{start:.1f}%–{min(end, 100):.1f}%" + (f" and 0%–{end - 100:.1f}%" if end > 100 else "")


def _read_pack(repo: Repository, pid: str, blobs: list[tuple[str, Any]], res: CheckResult) -> None:
    try:
        data = repo.backend.read(repo.pack_name(pid))
    except OSError as exc:
        res.problems.append(f"pack {pid}: cannot be read ({exc.strerror})")
        return
    res.packs_read += 1
    if repo.pack_digest(data) != pid:
        res.problems.append(f"pack {pid}: content does not match its name (corrupted or altered)")
    try:
        header = {e[0]: e for e in repo.read_pack_header(pid, data)}
    except (CryptoError, ValueError, struct.error) as exc:
        res.problems.append(f"pack {pid}: header unreadable ({getattr(exc, 'message', exc)})")
        header = {}
    for bid, ref in blobs:
        if header and bid not in header:
            res.problems.append(f"pack {pid}: blob {bid} is indexed here but not in the pack's own header")
        try:
            repo.open_blob(bid, data[ref.offset : ref.offset + ref.length])
            res.blobs_read += 1
        except CryptoError as exc:
            res.problems.append(f"pack {pid}: {exc.message}")
