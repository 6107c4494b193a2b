"""Two tasks of one process never fail on each other's repository lock, and one source never backs up twice at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dr import service
from dr.repo import Lock, Locked


def test_a_second_writer_in_this_process_waits_instead_of_failing(tmp_path: Path) -> None:
    """Thread B asks for the lock thread A holds: it gets it once A lets go (not "locked by <own pid>")."""
    held, release, got = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def a() -> None:
        with Lock(tmp_path, exclusive=True, command="a"):
            held.set()
            release.wait(30)

    def b() -> None:
        try:
            with Lock(tmp_path, exclusive=True, command="b"):
                got.set()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    ta = threading.Thread(target=a)
    ta.start()
    assert held.wait(30)
    tb = threading.Thread(target=b)
    tb.start()
    assert not got.wait(0.5), "B got the lock while A still held it"
    release.set()
    ta.join(30)
    tb.join(30)
    assert errors == [] and got.is_set()


def test_the_holding_thread_may_take_the_lock_again(tmp_path: Path) -> None:
    """Re-entry by the thread that writes is allowed (its own flock would otherwise conflict with itself)."""
    with Lock(tmp_path, exclusive=True, command="outer"):
        with Lock(tmp_path, exclusive=True, command="inner"):
            with Lock(tmp_path, exclusive=False, command="read"):
                pass
    with Lock(tmp_path, exclusive=True, command="again"):  # everything was released
        pass


def test_another_process_still_gets_locked(tmp_path: Path) -> None:
    """A holder in another process is still refused after the wait, naming who holds it."""
    import subprocess
    import sys

    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1] + '/lock', os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")  # fmt: skip
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match="locked by"):
            with Lock(tmp_path, exclusive=True, command="me", wait_s=0.3):
                pass
    finally:
        p.kill()
        p.wait()


def test_a_source_already_backing_up_is_skipped_with_a_note() -> None:
    """While a backup of a source runs in this process (its running-lock held), a second request is skipped with a note."""
    with service._RUNNING_GUARD:
        running = service._RUNNING.setdefault("reports", threading.Lock())
    assert running.acquire(timeout=30)  # as the running backup does
    try:
        second = service.backup_source(None, "reports")  # returns before it needs anything from a context
    finally:
        running.release()
    assert second == {"source": "reports", "skipped": "a backup of reports is already running in this process"}
