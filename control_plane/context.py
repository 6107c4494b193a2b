"""The typed, frozen context every service function, operation and job receives explicitly.

It holds the settings and what the composition root (``control_plane.wiring``) plugged in —
the declared operations, jobs and background workers, the SOC's inline decider and alert sink —
and builds the shared objects (state DB, ledger and platform key, Elasticsearch clients, gate,
supervisor) on first use. It is never a process global: the CLI, the API server, the scheduler
and each test build their own and pass it on. Nothing can be set on it after construction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.config import Settings

_STORES_LOCK = threading.Lock()

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from sqlalchemy import Engine

    from control_plane.audit import Ledger
    from control_plane.crypto import SM2PrivateKey
    from control_plane.gate import Gate
    from control_plane.gate.decision import AlertSink, InlineDecider
    from control_plane.operation import Operation
    from control_plane.scheduler.registry import JobSpec, Worker
    from control_plane.services import Supervisor

log = logging.getLogger("govctl")


@dataclass(frozen=True)
class Wiring:
    """What the composition root plugs into a context: everything a domain owns."""

    operations: Mapping[str, Operation] = field(default_factory=dict)
    jobs: Mapping[str, JobSpec] = field(default_factory=dict)
    workers: tuple[Worker, ...] = ()
    inline: Callable[[Context], InlineDecider] | None = None
    alerts: Callable[[Context], AlertSink] | None = None
    anchor_copies: Callable[[Context], list[Path]] = lambda ctx: []
    supervisor: Callable[[Settings], Supervisor] | None = None
    ledger: Callable[[Context], Ledger] | None = None
    gate: Callable[[Context], Gate] | None = None
    audit_feeds: tuple[Any, ...] = ()  # where the audit mirror also writes each record (the SOC's event feed)


class Context:
    """Settings plus the shared objects built from them; immutable once made."""

    __slots__ = ("settings", "wiring", "__dict__")

    def __init__(self, settings: Settings, wiring: Wiring | None = None) -> None:
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "wiring", wiring or Wiring())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the context is frozen; pass {name!r} as an argument instead")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("the context is frozen")

    @cached_property
    def engine(self) -> Engine:
        """The migrated state-DB engine."""
        from control_plane.db import engine_for

        return engine_for(self.settings.state_url())

    def _platform_key(self) -> SM2PrivateKey:
        from sqlalchemy import text

        from control_plane.crypto import platform_key

        with self.engine.connect() as conn:  # a key is created only for a ledger with no history
            empty = conn.execute(text("SELECT 1 FROM audit_records LIMIT 1")).first() is None
        return platform_key(self.settings.key_dir, self.key_passphrase(), self.settings.crypto.kdf_iterations, create=empty)

    @property
    def signer(self) -> SM2PrivateKey:
        """The platform SM2 key: the ledger's current one (a rotation replaces it there)."""
        return self.ledger.signer

    def key_passphrase(self) -> str:
        """The platform key's passphrase (configured, $GOVCTL_KEY_PASSPHRASE, or a 0600 file away from the key)."""
        from control_plane.crypto.keys import platform_passphrase

        c = self.settings.crypto
        return platform_passphrase(self.settings.key_passphrase_file(), c.key_passphrase.get_secret_value() if c.key_passphrase else None,
                                   legacy=self.settings.key_dir / "passphrase")  # fmt: skip

    @cached_property
    def ledger(self) -> Ledger:
        """The audit ledger in the state DB, signing with the platform key (built by the composition root)."""
        return self._need("ledger")(self)

    def _write_once_anchors(self) -> list[Path]:
        """The backup repository keeps each checkpoint as a write-once file (its ``anchors/`` folder)."""
        repo = self.settings.path(self.settings.dr.repository) if self.settings.dr.repository else self.settings.var / "dr" / "repo"
        return [repo / "anchors"] if repo.is_dir() else []

    def _anchor_copies(self) -> list[Path]:
        """Configured checkpoint copies plus what the domains add (the backup-pool bucket of every deployed stack)."""
        return [self.settings.path(p) for p in self.settings.audit.anchor_copies] + list(self.wiring.anchor_copies(self))

    @cached_property
    def es(self) -> Elasticsearch:
        """The official Elasticsearch client for our node (short timeouts, one retry)."""
        from control_plane.es import client_for

        return client_for(self.settings)

    @cached_property
    def es_inline(self) -> Any:
        """The Elasticsearch client for inline decisions: a short timeout and no retries (the gate is waiting)."""
        return self.es.options(request_timeout=self.settings.soc.context_timeout_s, max_retries=0)

    @cached_property
    def gate(self) -> Gate:
        """The operation gate: the policy, the declared operations, the inline decider and alert sink plugged in."""
        return self._need("gate")(self)

    @cached_property
    def supervisor(self) -> Supervisor:
        """The local services' supervisor."""
        return self._need("supervisor")(self.settings)

    def _need(self, part: str) -> Callable[..., Any]:
        made = getattr(self.wiring, part)
        if made is None:
            raise RuntimeError(f"this context was built without a {part}; build it with control_plane.wiring.context_for")
        return made

    def platform_key(self) -> SM2PrivateKey:
        """The platform key as stored (created on first use for a ledger with no history)."""
        return self._platform_key()

    def write_once_anchors(self) -> list[Path]:
        """Where each checkpoint is also kept write-once."""
        return self._write_once_anchors()

    def anchor_stores(self) -> list[Any]:
        """Write-once object stores holding each checkpoint (``audit.anchor_bucket`` on the object store)."""
        b = self.settings.audit.anchor_bucket
        return [self.object_store(b, attempts=2, timeout_s=10)] if b else []  # a checkpoint is written on the gate's path: fail fast

    def object_store(self, bucket: str, *, attempts: int = 6, timeout_s: float = 30.0) -> Any:
        """A bucket of ``services.objectstore`` (one client per bucket and retry policy per process)."""
        from control_plane.objects import store

        with _STORES_LOCK:
            key = f"{bucket}/{attempts}/{timeout_s}"
            if key not in self._object_stores:
                self._object_stores[key] = store(self.settings, bucket, attempts=attempts, timeout_s=timeout_s)
            return self._object_stores[key]

    @cached_property
    def _object_stores(self) -> dict[str, Any]:
        return {}

    def anchor_copies(self) -> list[Path]:
        """Where each checkpoint is also copied."""
        return self._anchor_copies()
