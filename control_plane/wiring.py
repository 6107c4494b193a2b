"""The composition root: the one place that lists the domains and plugs them into the core.

The core (``gate``, ``scheduler``, ``audit``, ``crypto``) imports no domain; each domain
declares what it owns — operations in ``ops.py``, jobs and workers in ``scheduled.py`` — and this
module collects them into the ``Wiring`` a ``Context`` carries. The CLI and the API build their
context here; so do the tests. Adding a domain is adding it to ``DOMAINS``.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from control_plane.config import Settings
from control_plane.context import Context, Wiring
from control_plane.operation import index
from control_plane.scheduler.registry import collect

log = logging.getLogger("govctl")

# Core packages first (they declare operations and jobs too), then the domains.
DOMAINS = ("control_plane.gate", "control_plane.audit", "control_plane.scheduler", "control_plane.services", "control_plane.deploy",
           "control_plane.playbook", "control_plane.soc", "control_plane.report", "dr", "control_plane.bastion",
           "control_plane.notify", "control_plane.tenancy", "control_plane.console")  # fmt: skip


def _part(domain: str, name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{domain}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{domain}.{name}":
            raise
        return None


def parts(name: str) -> list[ModuleType]:
    """Each domain's module ``name`` (``cli``, ``views``…) that exists, in the order of ``DOMAINS``."""
    return [m for d in DOMAINS if (m := _part(d, name)) is not None]


def _inline(ctx: Context) -> Any:
    """The SOC engine's in-process rules (the gate's inline decision); bad rule files are logged, not fatal."""
    from control_plane.soc.context import ContextRules
    from control_plane.soc.exceptions import active
    from control_plane.soc.inline import InlineEngine
    from control_plane.soc.rules import load_rules

    d = ctx.settings.soc.rules_dir
    ruleset = load_rules(ctx.settings.path(d) if d else None)
    for issue in ruleset.issues:
        logging.getLogger("govctl.soc").error("rule not loaded: %s", issue)
    engine = InlineEngine.from_rules(ruleset)
    engine.exceptions = lambda: active(ctx)
    engine.context = ContextRules(ruleset.correlations, lambda: ctx.es_inline)
    return engine


def _alerts(ctx: Context) -> Any:
    from control_plane.soc.alerts import GateAlerts

    return GateAlerts(lambda: ctx.es)


def _anchor_copies(ctx: Context) -> list[Path]:
    """The backup-pool bucket of every deployed stack keeps a copy of each audit checkpoint."""
    from control_plane.deploy.service import outputs

    copies = []
    for name in ctx.settings.deploy.stacks:
        bucket = outputs(ctx, name).get("backup_bucket")
        if bucket and Path(bucket).is_dir():
            copies.append(Path(bucket) / "audit" / "checkpoints.jsonl")
    return copies


def _ledger(ctx: Context) -> Any:
    """The audit ledger in the state DB, signing with the platform key; its head is signed again on the way out."""
    import atexit

    from control_plane.audit import Ledger

    a = ctx.settings.audit
    ledger = Ledger(ctx.engine, ctx.platform_key(), anchor_file=ctx.settings.anchor_file, checkpoint_every=a.checkpoint_every_records,
                    extra_anchors=ctx.anchor_copies, write_once=ctx.write_once_anchors,
                    stores=ctx.anchor_stores)  # fmt: skip
    atexit.register(ledger.close)  # the head is signed on the way out, not only every N records / T seconds
    return ledger


def _gate(ctx: Context) -> Any:
    """The gate with the policy, every declared operation, the SOC engine inline and the SOC as its alert sink."""
    from control_plane.gate import Gate
    from control_plane.gate.policy import load_policy

    p = ctx.settings.gate.policy_file
    w = ctx.wiring
    return Gate(ctx, load_policy(ctx.settings.path(p) if p else None), w.operations,
                soc=w.inline(ctx) if w.inline else None, alerts=w.alerts(ctx) if w.alerts else None)  # fmt: skip


def _supervisor(settings: Settings) -> Any:
    from control_plane.services import Supervisor

    return Supervisor(settings)


@cache
def wiring() -> Wiring:
    """Everything the domains declare, collected once per process."""
    ops, jobs, workers = [], [], []
    for d in DOMAINS:
        if (m := _part(d, "ops")) is not None:
            ops.append(m.OPERATIONS)
        if (m := _part(d, "scheduled")) is not None:
            jobs.append(m)
            workers.extend(getattr(m, "WORKERS", ()))
    from control_plane.soc.audit_feed import FEED

    return Wiring(operations=index(*ops), jobs=collect(*jobs), workers=tuple(workers), inline=_inline, alerts=_alerts,
                  anchor_copies=_anchor_copies, supervisor=_supervisor, audit_feeds=(FEED,), ledger=_ledger, gate=_gate)  # fmt: skip


def context_for(settings: Settings) -> Context:
    """A context for ``settings`` with every domain plugged in."""
    return Context(settings, wiring())
