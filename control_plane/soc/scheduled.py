"""The SOC engine's scheduled jobs and its streaming detector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control_plane.gate import OperationRequest, system_principal
from control_plane.scheduler.registry import Worker, job
from control_plane.soc import detect as d
from control_plane.soc import health as h
from control_plane.soc.respond import run_approved
from control_plane.soc.rules import RULES_DIR, load_rules
from control_plane.soc.stream import StreamDetector

if TYPE_CHECKING:
    from control_plane.context import Context

SCHEDULER = system_principal("system:scheduler")


def _rules_dir(ctx: Context) -> Any:
    sd = ctx.settings.soc.rules_dir
    return ctx.settings.path(sd) if sd else RULES_DIR


@job("soc.detect", description="run every detection rule over the events since its checkpoint", every_s=30)
def detect(ctx: Context) -> str:
    """One detection pass; a rule that errors is reported (and counted) without stopping the others."""
    res = d.run(ctx, load_rules(_rules_dir(ctx)))
    if res.errors:
        raise RuntimeError(f"{len(res.errors)} rule(s) failed: {'; '.join(f'{k}: {v}' for k, v in list(res.errors.items())[:3])}")
    return f"{res.rules} rules, {res.events} matching events, {res.created} alerts raised, {res.updated} updated"


@job("soc.retention", description="delete daily event indices older than soc.retention_days (default 180)", cron="40 2 * * *")
def retention(ctx: Context) -> str:
    """Apply the event retention through the gate (as system:scheduler: deleting data is a change like any other)."""
    days = ctx.settings.soc.retention_days
    view = ctx.gate.submit(SCHEDULER, OperationRequest("soc.retention.apply", "soc-events", {"days": days}, reason="event retention"))
    gone = view.result["deleted"]
    return f"deleted {len(gone)} indices older than {days} days" + (f": {', '.join(gone[:5])}" if gone else "") + f" ({view.id})"


@job("soc.responses", description="run approved response playbooks and attach their outcome to the alert", every_s=30)
def responses(ctx: Context) -> str:
    """Carry out approved responses."""
    done = run_approved(ctx)
    return f"{len(done)} responses run" + (f": {', '.join(x['status'] for x in done)}" if done else "")


@job("soc.health", description="the engine's self-checks: rule errors, detection lag, mapping drift, synthetic coverage events", every_s=300)
def health(ctx: Context) -> str:
    """Run the checks; each failure is an engine-health alert (and fails the run, so the job history shows it)."""
    rules_dir = _rules_dir(ctx)
    found = h.run(ctx, load_rules(rules_dir), rules_dir, lag_target_s=ctx.settings.soc.lag_target_s, grace_s=ctx.settings.soc.synthetic_grace_s)
    if found:
        raise RuntimeError(f"{len(found)} finding(s): " + "; ".join(f"{f.check} {f.message}" for f in found[:3]))
    return "engine healthy: no rule errors, no lag, every rule field mapped, synthetic events alerted"


def _stream(ctx: Context) -> Any:
    poll = ctx.settings.soc.stream_poll_s
    return StreamDetector(ctx, load_rules(_rules_dir(ctx)), poll_s=poll).start() if poll > 0 else None


WORKERS = (Worker("soc.stream", _stream),)
