"""The backup repository: byte-identical restores, deduplication, corruption and forgery found and named,
wrong keys refused, a lock the kernel releases, and SIGKILL at any moment leaving a sound repository."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.crypto import IntegrityError, InvalidSignature, SM2PrivateKey
from dr.check import check
from dr.files import backup, restore
from dr.repo import Locked, Repository, WrongKey

KEY = SM2PrivateKey.generate()


def _tree(root: Path, n: int = 30, size: int = 200_000, seed: int = 1) -> Path:
    rnd = random.Random(seed)
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(n):
        d = root if i % 3 == 0 else root / "sub" if i % 3 == 1 else root / "sub" / "deeper"
        (d / f"file{i}.dat").write_bytes(rnd.randbytes(size + i))
    (root / "text.txt").write_text("公文 " * 5000, encoding="utf-8")  # compressible
    (root / "empty").write_bytes(b"")
    os.symlink("sub/file1.dat", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.chmod(root / "sub" / "file1.dat", 0o600)
    os.utime(root / "text.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def _same(a: Path, b: Path) -> None:
    """Contents, modes, mtimes (ns) and symlinks identical."""
    for dirpath, dirnames, filenames in os.walk(a):
        rel = Path(dirpath).relative_to(a)
        for name in dirnames + filenames:
            pa, pb = Path(dirpath) / name, b / rel / name
            sa, sb = os.lstat(pa), os.lstat(pb)
            assert (sa.st_mode, sa.st_mtime_ns) == (sb.st_mode, sb.st_mtime_ns), pa
            if pa.is_symlink():
                assert os.readlink(pa) == os.readlink(pb)
            elif pa.is_file():
                assert pa.read_bytes() == pb.read_bytes(), pa


@pytest.fixture()
def repo(tmp_path: Path) -> Repository:
    return Repository.init(tmp_path / "repo", "correct horse", signer=KEY, iterations=100_000, pack_size=1_000_000)


def test_restore_is_byte_identical_and_include_works(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    sid, st = backup(repo, src, name="docs")
    assert st.files == 32 and not st.errors
    out = restore(repo, sid, tmp_path / "out")
    assert out["files"] == 32
    _same(src, tmp_path / "out")
    part = restore(repo, sid[:12], tmp_path / "part", include=["sub/deeper"])
    assert sorted(p.name for p in (tmp_path / "part").rglob("*") if p.is_file()) == sorted(p.name for p in (src / "sub" / "deeper").iterdir())
    assert part["files"] == 10


def test_second_backup_skips_unchanged_and_stores_only_changes(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    s1, st1 = backup(repo, src, name="docs")
    (src / "sub" / "file4.dat").write_bytes(os.urandom(150_000))
    s2, st2 = backup(repo, src, name="docs")
    assert st2.skipped_unchanged == 31 and st2.files == 32
    assert st2.new_bytes < 200_000 + 10_000 < st1.new_bytes  # the changed file and its trees, nothing else
    m = repo.load_snapshot(s2)
    assert m["parent"] == s1 and m["source"] == "docs"
    restore(repo, s2, tmp_path / "out")
    _same(src, tmp_path / "out")


def test_wrong_passphrase_is_a_clear_error(repo: Repository) -> None:
    with pytest.raises(WrongKey, match="wrong passphrase"):
        Repository.open(repo.root, "wrong", signer=KEY, trusted=KEY.public_key)


def test_bit_flip_found_by_read_data_and_named(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    sid, _ = backup(repo, src, name="docs")
    assert check(repo, read_data=True).ok
    pack = sorted(repo.packs_on_disk())[0]
    f = repo.pack_path(pack)
    data = bytearray(f.read_bytes())
    data[100] ^= 0x04
    f.write_bytes(bytes(data))
    fresh = Repository.open(repo.root, "correct horse", signer=KEY, trusted=KEY.public_key)
    res = check(fresh, read_data=True)
    assert not res.ok
    assert any(pack in p and "does not match its name" in p for p in res.problems)
    assert any(pack in p and "does not authenticate" in p for p in res.problems)
    with pytest.raises(IntegrityError):
        restore(fresh, sid, tmp_path / "out")


def test_missing_pack_and_forged_snapshot_named(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    sid, _ = backup(repo, src, name="docs")
    victim = sorted(repo.packs_on_disk())[-1]
    repo.pack_path(victim).unlink()
    res = check(Repository.open(repo.root, "correct horse", signer=KEY, trusted=KEY.public_key))
    assert any(victim in p and "missing" in p for p in res.problems)
    # a manifest edited in place no longer matches its name
    snap = repo.root / "snapshots" / sid
    doc = json.loads(snap.read_text())
    snap.write_text(json.dumps({**doc, "key_id": "x"}))
    with pytest.raises(InvalidSignature, match="does not match its name"):
        repo.load_snapshot(sid)
    # a snapshot signed by someone else (properly named) is refused as forged
    other = SM2PrivateKey.generate()
    forger = Repository(repo.root, repo.keys, repo.config, other, other.public_key)
    fake = forger.write_snapshot({"time": "2026-01-01T00:00:00+00:00", "source": "docs", "tree": "00" * 32, "paths": [], "parent": None, "stats": {}, "tags": []})
    with pytest.raises(InvalidSignature, match="not signed by the platform key"):
        repo.load_snapshot(fake)
    assert any(fake in p for p in check(repo).problems)


def test_lock_says_who_holds_it_and_dies_with_its_holder(repo: Repository, tmp_path: Path) -> None:
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); from dr.repo import Lock; from pathlib import Path; "
            f"l = Lock(Path({str(repo.root)!r}), exclusive=True, command='backup docs').__enter__(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match=f"pid {holder.pid}.*backup docs"):
            backup(repo, _tree(tmp_path / "src"), name="docs")
    finally:
        holder.kill()
        holder.wait()
    backup(repo, tmp_path / "src", name="docs")  # the kernel dropped the dead holder's lock: nothing to break by hand


def test_rotating_subset_covers_every_pack(repo: Repository, tmp_path: Path) -> None:
    backup(repo, _tree(tmp_path / "src", n=60, size=150_000), name="docs")
    packs = repo.packs_on_disk()
    assert len(packs) >= 5
    read = 0
    slices = []
    for _ in range(4):
        r = check(repo, subset_pct=25)
        assert r.ok
        read += r.packs_read
        slices.append(r.subset)
    assert read == len(packs) and len(set(slices)) == 4


KILLER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from control_plane.crypto import SM2PrivateKey
from dr.repo import Repository
from dr.files import backup
key = SM2PrivateKey.from_pem(open({key!r}).read())
repo = Repository.open(Path({repo!r}), "correct horse", signer=key, trusted=key.public_key)
sid, st = backup(repo, Path({src!r}), name="docs", progress=lambda nbytes, files: print("progress", nbytes, flush=True))
print(st.new_bytes, flush=True)
"""


def test_sigkill_anywhere_leaves_a_sound_repository_and_resumes(repo: Repository, tmp_path: Path) -> None:
    """SIGKILL at random points of observed progress: check passes after every kill, no snapshot points at missing data, and the next run does not re-upload what landed.

    The kill is triggered by the bytes the backup reports having read, never by a sleep, so a
    busy machine changes when it happens, not whether it lands mid-backup.
    """
    src = _tree(tmp_path / "src", n=90, size=500_000, seed=7)
    (tmp_path / "k.pem").write_text(KEY.to_pem())
    script = KILLER.format(root=str(Path(__file__).resolve().parents[2]), key=str(tmp_path / "k.pem"), repo=str(repo.root), src=str(src))
    rnd = random.Random(42)
    subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)  # the base: everything but the new files
    kills = 0
    for i in range(8):
        # plenty new every round; "a_new…" sorts first, so the bytes a progress report counts are the new files' alone
        (src / f"a_new{i}.dat").write_bytes(rnd.randbytes(30_000_000))
        new_now = sum(p.stat().st_size for p in src.glob("a_new*.dat"))
        kill_at = rnd.uniform(0.1, 0.9) * new_now  # a point inside the new data, reported about every MiB: never after the end
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts[:1] == ["progress"] and int(parts[1]) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
        proc.wait()
        r = Repository.open(repo.root, "correct horse", signer=KEY, trusted=KEY.public_key)
        res = check(r)
        assert res.ok, (i, res.problems)
    total = sum(p.stat().st_size for p in src.rglob("a_new*.dat"))
    print(f"kills={kills}")
    assert kills == 8  # every round was killed on observed progress, before its backup could finish
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    resumed_new_bytes = int(done.stdout.strip().splitlines()[-1])
    print(f"resumed_new_bytes={resumed_new_bytes} new_total={total}")
    assert resumed_new_bytes < total * 0.8  # chunks that landed before the kills were not uploaded again
    r = Repository.open(repo.root, "correct horse", signer=KEY, trusted=KEY.public_key)
    assert check(r, read_data=True).ok
    latest = r.snapshots()[-1]
    restore(r, latest["id"], tmp_path / "out")
    _same(src, tmp_path / "out")


def test_packs_are_named_by_the_sm3_tree_and_older_repositories_by_whole_file_sm3(tmp_path: Path) -> None:
    """A new repository names packs by the one-level SM3 tree (dr/FORMAT.md); one made before pack_hash existed keeps whole-file
    SM3 names, and both restore and pass check --read-data. A pack altered in place is caught either way."""
    from control_plane.crypto import sm3_hex
    from control_plane.crypto.sm3 import sm3_tree_hex

    src = _tree(tmp_path / "src", n=12, size=300_000)
    for name, scheme, digest in (("new", "sm3-tree-1m", sm3_tree_hex), ("old", None, sm3_hex)):
        r = Repository.init(tmp_path / name, "correct horse", signer=KEY, iterations=100_000, pack_size=1_000_000)
        assert r.config["pack_hash"] == "sm3-tree-1m"
        if scheme is None:  # as a repository written by the version before this one
            cfg = {k: v for k, v in r.config.items() if k != "pack_hash"}
            (tmp_path / name / "config").write_text(json.dumps(cfg, indent=1))
            r = Repository.open(tmp_path / name, "correct horse", signer=KEY, trusted=KEY.public_key)
        sid, _ = backup(r, src, name="docs")
        packs = sorted((tmp_path / name / "data").rglob("*"))
        packs = [p for p in packs if p.is_file()]
        assert packs and all(p.name == digest(p.read_bytes()) for p in packs), name
        restore(r, sid, tmp_path / f"out-{name}")
        _same(src, tmp_path / f"out-{name}")
        assert check(r, read_data=True).ok
        victim = packs[0]
        body = bytearray(victim.read_bytes())
        body[len(body) // 2] ^= 1
        victim.write_bytes(bytes(body))
        assert any("does not match its name" in p for p in check(r, read_data=True).problems), name
