"""Leader election: only one process runs scheduled jobs.

Embedded default (SQLite): an exclusive ``flock`` on ``var/run/scheduler.leader``. Production
(PostgreSQL): a session advisory lock on a dedicated connection. Either way the kernel or the
database releases the lock when its holder dies, so there is never a stale lock to break.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

LEADER_LOCK_KEY = 0x676F7663746C0003


class LeaderLock:
    """Try-acquire, hold and release the scheduler's leadership."""

    def __init__(self, engine: Engine, lock_file: Path) -> None:
        self.engine = engine
        self.lock_file = lock_file
        self._fh: Any = None
        self._conn: Any = None

    @property
    def kind(self) -> str:
        """'file' on SQLite, 'postgres-advisory' on PostgreSQL."""
        return "file" if self.engine.dialect.name == "sqlite" else "postgres-advisory"

    @property
    def held(self) -> bool:
        """True while this process is the leader."""
        if self.kind == "file":
            return self._fh is not None
        if self._conn is None:
            return False
        try:
            self._conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a dead connection means the lock is gone
            self._conn = None
            return False

    def try_acquire(self) -> bool:
        """Become leader if nobody is; never blocks."""
        if self.held:
            return True
        if self.kind == "file":
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.lock_file, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                return False
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
            fh.flush()
            self._fh = fh
            return True
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        """Give up leadership."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None

    def holder(self) -> dict[str, Any] | None:
        """Who leads now, as far as can be told (file lock only)."""
        if self.kind != "file" or not self.lock_file.exists():
            return None
        try:
            with open(self.lock_file) as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    return None  # nobody holds it
                except BlockingIOError:
                    return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return None
