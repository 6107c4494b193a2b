"""The process-wide runtime: settings plus the lazily built engine, platform key, ledger and clients.

One ``Runtime`` per process (the CLI invocation, the API server, a test). Scheduled jobs reach
it through ``current()`` because APScheduler's persistent store keeps only a textual reference.
"""

from __future__ import annotations

import os
import pwd
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.config import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from sqlalchemy import Engine

    from control_plane.audit import Ledger
    from control_plane.crypto import SM2PrivateKey
    from control_plane.gate import Gate
    from control_plane.services import Supervisor


class Runtime:
    """Settings and the shared objects built from them, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deploy_progress = None  # a callback (op, resource, outcome) the CLI sets to show engine steps

    @cached_property
    def engine(self) -> Engine:
        """The migrated state-DB engine."""
        from control_plane.db import engine_for

        return engine_for(self.settings.state_url())

    @cached_property
    def signer(self) -> SM2PrivateKey:
        """The platform SM2 key (created on first use, stored wrapped)."""
        from sqlalchemy import text

        from control_plane.crypto import platform_key

        with self.engine.connect() as conn:  # a key is created only for a ledger with no history
            empty = conn.execute(text("SELECT 1 FROM audit_records LIMIT 1")).first() is None
        return platform_key(self.settings.key_dir, self.key_passphrase(), self.settings.crypto.kdf_iterations, create=empty)

    def key_passphrase(self) -> str:
        """The platform key's passphrase (configured, $GOVCTL_KEY_PASSPHRASE, or a 0600 file away from the key)."""
        from control_plane.crypto.keys import platform_passphrase

        c = self.settings.crypto
        return platform_passphrase(self.settings.key_passphrase_file(), c.key_passphrase.get_secret_value() if c.key_passphrase else None,
                                   legacy=self.settings.key_dir / "passphrase")  # fmt: skip

    @cached_property
    def ledger(self) -> Ledger:
        """The audit ledger in the state DB."""
        from control_plane.audit import Ledger

        import atexit

        a = self.settings.audit
        ledger = Ledger(self.engine, self.signer, anchor_file=self.settings.anchor_file, checkpoint_every=a.checkpoint_every_records,
                        extra_anchors=self.anchor_copies, write_once=self.write_once_anchors)  # fmt: skip
        atexit.register(ledger.close)  # the head is signed on the way out, not only every N records / T seconds
        return ledger

    def write_once_anchors(self) -> list[Path]:
        """The backup repository keeps each checkpoint as a write-once file (its ``anchors/`` folder)."""
        repo = self.settings.path(self.settings.dr.repository) if self.settings.dr.repository else self.settings.var / "dr" / "repo"
        return [repo / "anchors"] if repo.is_dir() else []

    def anchor_copies(self) -> list[Path]:
        """Configured checkpoint copies, plus the backup-pool bucket of every deployed stack."""
        from control_plane.deploy.service import outputs

        copies = [self.settings.path(p) for p in self.settings.audit.anchor_copies]
        for name in self.settings.deploy.stacks:
            bucket = outputs(self, name).get("backup_bucket")
            if bucket and Path(bucket).is_dir():
                copies.append(Path(bucket) / "audit" / "checkpoints.jsonl")
        return copies

    @cached_property
    def es(self) -> Elasticsearch:
        """The official Elasticsearch client for our node (short timeouts, one retry)."""
        from control_plane.es import client_for

        return client_for(self.settings)

    @cached_property
    def gate(self) -> Gate:
        """The operation gate with its policy and the SOC inline engine."""
        from control_plane.gate import Gate
        from control_plane.gate.policy import load_policy

        p = self.settings.gate.policy_file
        return Gate(self, load_policy(self.settings.path(p) if p else None), self.inline_engine())

    def inline_engine(self) -> object:
        """The SOC engine's in-process rules (the gate's inline decision); bad rule files are logged, not fatal."""
        import logging

        from control_plane.soc.inline import InlineEngine
        from control_plane.soc.rules import load_rules

        d = self.settings.soc.rules_dir
        ruleset = load_rules(self.settings.path(d) if d else None)
        for issue in ruleset.issues:
            logging.getLogger("govctl.soc").error("rule not loaded: %s", issue)
        from control_plane.soc.exceptions import active

        from control_plane.soc.context import ContextRules

        engine = InlineEngine.from_rules(ruleset)
        engine.exceptions = lambda: active(self)
        engine.context = ContextRules(ruleset.correlations, lambda: self.es_inline)
        return engine

    @cached_property
    def es_inline(self) -> Any:
        """The Elasticsearch client for inline decisions: a short timeout and no retries (the gate is waiting)."""
        return self.es.options(request_timeout=self.settings.soc.context_timeout_s, max_retries=0)

    @cached_property
    def supervisor(self) -> Supervisor:
        """The local services' supervisor."""
        from control_plane.services import Supervisor

        return Supervisor(self.settings)

    def audit(self, operation: str, *, target: str = "", params: object = None, outcome: str = "succeeded",
              actor: str | None = None, role: str = "operator", source: str = "cli", details: dict | None = None) -> None:  # fmt: skip
        """Append an audit record for a local action (the gate will own this path)."""
        from control_plane.audit import AuditEvent

        self.ledger.append(AuditEvent(actor=actor or pwd.getpwuid(os.geteuid()).pw_name, role=role, source=source, operation=operation,
                                      target=target, params=params, outcome=outcome, details=details or {}))  # fmt: skip


_current: Runtime | None = None


def set_current(rt: Runtime) -> Runtime:
    """Make ``rt`` the runtime scheduled jobs of this process use."""
    global _current
    _current = rt
    return rt


def current() -> Runtime:
    """The runtime of this process (built from the default configuration if none was set)."""
    global _current
    if _current is None:
        from control_plane.config import load

        _current = Runtime(load())
    return _current
