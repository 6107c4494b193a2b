"""Real-time file backup: changes are shipped within seconds from the inotify journal, without a tree walk, and restore identically."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from dr.check import check
from dr.files import restore
from dr.realtime import Watcher
from dr.repo import Repository
from tests.dr.test_repository import KEY, _same, _tree


def _wait(cond, limit: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cond()


def test_changes_shipped_continuously_and_restored_identically(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", "pw", signer=KEY, iterations=100_000, pack_size=1_000_000)
    src = _tree(tmp_path / "src", n=15, size=100_000)
    shipped: list[tuple[str, set[str]]] = []
    w = Watcher(repo, src, "docs", interval_s=0.5, on_ship=lambda sid, changed, first: shipped.append((sid, changed))).start()
    try:
        # a new file, a changed file, a deletion, a new directory with files, a rename, a new symlink
        (src / "new.txt").write_text("written at runtime")
        _wait(lambda: any("new.txt" in c for _, c in shipped))
        (src / "sub" / "file4.dat").write_bytes(os.urandom(50_000))
        (src / "sub" / "deeper" / "file2.dat").unlink()
        (src / "fresh" / "inner").mkdir(parents=True)
        for i in range(3):
            (src / "fresh" / "inner" / f"x{i}").write_bytes(os.urandom(10_000))
        shutil.move(str(src / "file0.dat"), str(src / "sub" / "moved.dat"))
        os.symlink("sub/moved.dat", src / "to-moved")
        n = len(shipped)
        _wait(lambda: len(shipped) > n)
        time.sleep(1.5)  # let the journal drain
        w.ship()
        # later shipments start from the trees kept in memory: changes in a walked-in directory and a known one
        (src / "fresh" / "inner" / "x1").write_bytes(os.urandom(7_000))
        (src / "sub" / "deeper" / "file5.dat").write_bytes(os.urandom(9_000))
        time.sleep(0.3)
        w.ship()
        (src / "fresh" / "inner" / "x9").write_text("late")
        (src / "sub" / "deeper" / "file5.dat").unlink()
        time.sleep(0.3)
        w.ship()
    finally:
        w.stop()
    last = repo.snapshots()[-1]
    assert last["source"] == "docs" and "realtime" in last["tags"] and last.get("changed_paths", 0) >= 1
    restore(repo, last["id"], tmp_path / "out")
    _same(src, tmp_path / "out")
    _same(tmp_path / "out", src)  # and nothing extra (the deleted and moved files are gone)
    assert check(repo, read_data=True).ok
    # incremental shipments read only what changed
    incr = [s for s in repo.snapshots() if s.get("changed_paths")]
    assert incr and all(s["stats"]["bytes"] < 300_000 for s in incr)


def test_rpo_status_and_metric_follow_the_watcher(sqlite_runtime, tmp_path: Path) -> None:  # noqa: ANN001
    """No restore point: not ok (and +Inf in the metric). A live watcher with nothing pending: RPO 0. A pending change: its age."""
    from control_plane import metrics
    from control_plane.config import DrSource
    from dr import service

    rt = sqlite_runtime
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.txt").write_text("a")
    object.__setattr__(rt.settings.dr, "sources", {"docs": DrSource(type="files", path=src, realtime=True, rpo_s=60)})
    rows = service.rpo_status(rt)
    assert rows == [{"source": "docs", "type": "files", "newest": None, "age_s": None, "rpo_s": 60, "ok": False, "host": None}]
    assert metrics.DR_RPO.labels(source="docs")._value.get() == float("inf")
    live = service.Live(rt).start()
    try:
        assert len(live.watchers) == 1
        row = service.rpo_status(rt)[0]
        assert row["ok"] and row["age_s"] == 0.0 and metrics.DR_RPO.labels(source="docs")._value.get() == 0.0
        live.watchers[0].interval_s = 3600  # hold shipments back: a pending change now has an age
        time.sleep(1.2)  # the tick already waiting (1 s) passes first
        (src / "b.txt").write_text("b")
        _wait(lambda: live.watchers[0].journal.first_at is not None)
        time.sleep(0.3)
        assert service.rpo_status(rt)[0]["age_s"] >= 0.2
        # another process (dr status, the CLI) sees the same through the streamer's heartbeat
        service.write_heartbeats(rt, live)
        saved, service.LIVE = service.LIVE, None
        try:
            assert service.rpo_status(rt)[0]["age_s"] >= 0.2 and service.heartbeat_lag(rt, "docs") is not None
        finally:
            service.LIVE = saved
    finally:
        live.stop()
    assert service.LIVE is None
    snaps = service.open_repo(rt).snapshots()
    assert any("b.txt" in {n["name"] for _, n in service.open_repo(rt).walk(s["tree"])} for s in snaps)  # stop() shipped it
