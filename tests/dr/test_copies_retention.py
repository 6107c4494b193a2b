"""Copies to a second repository without decrypting file data, retention by policy, and prune."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dr.check import check
from dr.copy import copy_snapshots, init_copy
from dr.files import backup, restore
from dr.repo import RepoError, Repository
from dr.retention import forget, plan, prune
from tests.dr.test_repository import KEY, _same, _tree


@pytest.fixture()
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "repo", "pw-a", signer=KEY, iterations=100_000, pack_size=500_000)


def test_copy_verified_idempotent_and_throttled(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=20, size=200_000)
    s1, _ = backup(repo, src, name="docs")
    dst = init_copy(repo, tmp_path / "copy", "pw-b", iterations=100_000)
    res = copy_snapshots(repo, dst, None)
    assert res["snapshots"] == [s1] and res["packs"] >= 2
    assert check(dst, read_data=True).ok
    restore(dst, s1, tmp_path / "out")
    _same(src, tmp_path / "out")
    assert copy_snapshots(repo, dst, None) == {"snapshots": [], "packs": 0, "bytes": 0}
    (src / "more.dat").write_bytes(os.urandom(3_000_000))
    s2, _ = backup(repo, src, name="docs")
    t0 = time.monotonic()
    res2 = copy_snapshots(repo, dst, [s2], bandwidth_mib_s=4)
    took = time.monotonic() - t0
    assert res2["snapshots"] == [s2] and res2["bytes"] >= 3_000_000
    assert took >= res2["bytes"] / (4 << 20) * 0.8  # the limit holds
    # a repository with another master key is not a copy target
    other = Repository.init(tmp_path / "other", "pw-c", signer=KEY, iterations=100_000)
    with pytest.raises(RepoError, match="different master key"):
        copy_snapshots(repo, other, None)


def test_corrupted_pack_is_not_copied(repo: Repository, tmp_path: Path) -> None:
    backup(repo, _tree(tmp_path / "src", n=10), name="docs")
    pack = sorted(repo.packs_on_disk())[0]
    data = bytearray(repo.pack_path(pack).read_bytes())
    data[10] ^= 1
    repo.pack_path(pack).write_bytes(bytes(data))
    dst = init_copy(repo, tmp_path / "copy", "pw-b", iterations=100_000)
    with pytest.raises(RepoError, match=pack[:16]):
        copy_snapshots(repo, dst, None)


def test_retention_plan_keeps_what_the_policy_says() -> None:
    snaps = [{"id": f"s{d:02d}{h}", "time": f"2026-10-{d:02d}T{h:02d}:00:00+00:00"} for d in range(1, 31) for h in (1, 13)]
    policy = SimpleNamespace(keep_last=3, keep_daily=5, keep_weekly=2, keep_monthly=1, keep_yearly=0)
    keep, drop, why = plan(snaps, policy)
    kept = {s["id"] for s in keep}
    # last 3; newest of each of the last 5 days; newest of the last 2 ISO weeks; newest of the month
    assert kept == {"s3013", "s301", "s2913", "s2813", "s2713", "s2613", "s2513"}
    assert why["s3013"] == ["last", "daily", "weekly", "monthly"] and "weekly" in why["s2513"]
    assert len(drop) == 60 - 7


def test_forget_then_prune_frees_space_and_keeps_the_rest_intact(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=12, size=300_000)
    backup(repo, src, name="docs")
    for f in src.rglob("file*.dat"):
        f.write_bytes(os.urandom(300_000))
    s2, _ = backup(repo, src, name="docs")
    before = sum(repo.pack_path(p).stat().st_size for p in repo.packs_on_disk())
    res = forget(repo, SimpleNamespace(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0))
    assert [k["id"] for k in res["kept"]] == [s2] and len(res["forgotten"]) == 1
    dry = prune(repo, dry_run=True)
    assert dry["packs_deleted"] + dry["packs_repacked"] > 0
    prune(repo)
    fresh = Repository.open(repo.root, "pw-a", signer=KEY, trusted=KEY.public_key)
    after = sum(fresh.pack_path(p).stat().st_size for p in fresh.packs_on_disk())
    assert after < before * 0.65
    assert check(fresh, read_data=True).ok
    restore(fresh, s2, tmp_path / "out")
    _same(src, tmp_path / "out")
