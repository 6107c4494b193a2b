"""The SOC engine's scheduled jobs."""

from __future__ import annotations

from typing import Any

from control_plane.scheduler.registry import job


@job("soc.detect", description="run every detection rule over the events since its checkpoint", every_s=30)
def detect(rt: Any) -> str:
    """One detection pass; a rule that errors is reported (and counted) without stopping the others."""
    from control_plane.soc import detect as d
    from control_plane.soc.rules import load_rules

    sd = rt.settings.soc.rules_dir
    res = d.run(rt, load_rules(rt.settings.path(sd) if sd else None))
    if res.errors:
        raise RuntimeError(f"{len(res.errors)} rule(s) failed: {'; '.join(f'{k}: {v}' for k, v in list(res.errors.items())[:3])}")
    return f"{res.rules} rules, {res.events} matching events, {res.created} alerts raised, {res.updated} updated"


@job("soc.retention", description="delete daily event indices older than soc.retention_days (default 180)", cron="40 2 * * *")
def retention(rt: Any) -> str:
    """Apply the event retention."""
    from control_plane.soc.retention import apply

    gone = apply(rt.es, rt.settings.soc.retention_days)
    return f"deleted {len(gone)} indices older than {rt.settings.soc.retention_days} days" + (f": {', '.join(gone[:5])}" if gone else "")


@job("soc.responses", description="run approved response playbooks and attach their outcome to the alert", every_s=30)
def responses(rt: Any) -> str:
    """Carry out approved responses."""
    from control_plane.soc.respond import run_approved

    done = run_approved(rt)
    return f"{len(done)} responses run" + (f": {', '.join(d['status'] for d in done)}" if done else "")


@job("soc.health", description="the engine's self-checks: rule errors, detection lag, mapping drift, synthetic coverage events", every_s=300)
def health(rt: Any) -> str:
    """Run the checks; each failure is an engine-health alert (and fails the run, so the job history shows it)."""
    from control_plane.soc import health as h
    from control_plane.soc.rules import RULES_DIR, load_rules

    sd = rt.settings.soc.rules_dir
    rules_dir = rt.settings.path(sd) if sd else RULES_DIR
    found = h.run(rt, load_rules(rules_dir), rules_dir, lag_target_s=rt.settings.soc.lag_target_s, grace_s=rt.settings.soc.synthetic_grace_s)
    if found:
        raise RuntimeError(f"{len(found)} finding(s): " + "; ".join(f"{f.check} {f.message}" for f in found[:3]))
    return "engine healthy: no rule errors, no lag, every rule field mapped, synthetic events alerted"
