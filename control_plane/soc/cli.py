"""The SOC engine's commands: rules, alerts, exceptions, decide, ingest, health."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, context, emit_json, err, gated, out, pending_note, principal,
                                  public, reads, when)  # fmt: skip
from control_plane.errors import GovctlError


soc_app = typer.Typer(help="The SOC engine: detection rules and event ingestion.", no_args_is_help=True)
rules_app = typer.Typer(help="Detection rules (Sigma YAML plus severity, action, mode, response).", no_args_is_help=True)
soc_app.add_typer(rules_app, name="rules")


def _rules_dir(path: Optional[Path]) -> Optional[Path]:
    if path:
        return path
    d = context().settings.soc.rules_dir
    return context().settings.path(d) if d else None


@rules_app.command("validate")
@public("checks rule files on disk; touches no state")
def rules_validate(path: Optional[Path] = typer.Option(None, "--path", help="A rules directory (default: soc.rules_dir)."), as_json: bool = JsonOpt) -> None:
    """Load every rule (sub-folders too); list each refused file with line, field and reason; exit 1 if any was refused or none loaded."""
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    if as_json:
        emit_json({"loaded": len(rs.rules), "correlations": len(rs.correlations), "issues": [str(i) for i in rs.issues]})
    else:
        out.print(f"{len(rs.rules)} rules and {len(rs.correlations)} correlations loaded")
        for i in rs.issues:
            err.print(f"[red]refused[/red] {i}", highlight=False)
        if not rs.rules and not rs.correlations and not rs.issues:
            err.print("no rule files (*.yml) found there: give the folder that holds the rules, e.g. --path sigma/rules/linux", highlight=False)
    if rs.issues or not (rs.rules or rs.correlations):
        raise typer.Exit(1)


@rules_app.command("list")
@reads("soc.read")
def rules_list(path: Optional[Path] = typer.Option(None, "--path"), as_json: bool = JsonOpt) -> None:
    """Rules with severity, action, mode and response."""
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    feed_only = rs.correlation_only
    rows = [{"id": r.id, "name": r.path.stem, "title": r.title, "severity": r.ours.severity, "action": r.ours.action,
             "mode": r.ours.mode, "response": r.ours.response, "tags": r.tags,
             "kind": "feeds correlations" if r.id in feed_only else "single event"} for r in rs.rules]  # fmt: skip
    rows += [{"id": c.id, "name": c.path.stem, "title": c.title, "severity": c.ours.severity, "action": c.ours.action,
              "mode": c.ours.mode, "response": c.ours.response, "tags": c.tags,
              "kind": f"{c.type} over {', '.join(r.path.stem for r in c.rules)} by {', '.join(c.group_by)} in {c.timespan_s}s"}
             for c in rs.correlations]  # fmt: skip
    if as_json:
        emit_json(rows)
        return
    t = Table("rule", "severity", "action", "mode", "response", "kind", "title")
    for r in rows:
        t.add_row(r["name"], r["severity"], r["action"], r["mode"], r["response"] or "-", r["kind"], r["title"])
    out.print(t)


@rules_app.command("test")
@public("runs rule files' own test cases on disk; touches no state")
def rules_test(path: Optional[Path] = typer.Option(None, "--path"), as_json: bool = JsonOpt) -> None:
    """Run every rule over its test events in process (the Elasticsearch check runs in CI); exit 1 on a miss."""
    import yaml as _yaml

    from control_plane.soc.matcher import evaluate
    from control_plane.soc.rules import load_rules

    rs = load_rules(_rules_dir(path))
    results, failed = [], 0
    for r in rs.rules:
        tf = r.path.parent / "tests" / f"{r.path.stem}.yml"
        if not tf.exists():
            results.append({"rule": r.path.stem, "ok": False, "why": f"no test file {tf}"})
            failed += 1
            continue
        case = _yaml.safe_load(tf.read_text())
        bad = [f"missed match #{i}" for i, e in enumerate(case.get("match", [])) if not evaluate(r.condition, e)]
        bad += [f"matched nomatch #{i}" for i, e in enumerate(case.get("nomatch", [])) if evaluate(r.condition, e)]
        failed += bool(bad)
        results.append({"rule": r.path.stem, "ok": not bad, "why": "; ".join(bad)})
    if as_json:
        emit_json(results)
    else:
        for x in results:
            out.print(f"{'[green]ok[/green]  ' if x['ok'] else '[red]FAIL[/red]'} {x['rule']} {x['why']}")
        out.print(f"{len(results) - failed} passed, {failed} failed")
    if failed or rs.issues:
        raise typer.Exit(1)


alerts_app = typer.Typer(help="Alerts: list, show, acknowledge, assign, note, close with a verdict.", no_args_is_help=True)
soc_app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
@reads("soc.read")
def alerts_list(status: Optional[str] = typer.Option(None, help="open, acknowledged or closed"), severity: Optional[str] = None,
                rule: Optional[str] = None, assignee: Optional[str] = None,
                since: Optional[str] = typer.Option(None, help="ISO time or an age: 30m, 2h, 7d"), limit: int = 50,
                as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Alerts, newest first."""
    from control_plane.soc import alerts

    principal()
    rows = alerts.search(context().es, status=status, severity=severity, rule=rule, assignee=assignee, since=when(since), limit=limit)
    if as_json:
        emit_json(rows)
        return
    t = Table("id", "severity", "grade", "status", "rule", "count", "first seen (UTC)", "last seen (UTC)", "raised (UTC)", "assignee", "group")
    for a in rows:
        grade = (a.get("grade") or {}).get("code", "-")
        t.add_row(a["id"], a["severity"], grade, a["status"] + (" (shadow)" if a.get("shadow") else ""), a["rule"]["name"], str(a["count"]),
                  str(a.get("first_seen") or "")[:19], str(a["last_seen"])[:19], str(a.get("@timestamp") or "")[:19], a.get("assignee") or "-",
                  escape(a["group_key"]))  # fmt: skip  (the group key holds values from events)
    out.print(t)


@alerts_app.command("show")
@reads("soc.read")
def alerts_show(alert_id: str, as_json: bool = JsonOpt) -> None:
    """One alert: the rule, the matched events (a snapshot), notes and history."""
    from control_plane.soc import alerts

    principal()
    a = alerts.get(context().es, alert_id)
    if as_json:
        emit_json(a)
        return
    out.print(f"[bold]{a['id']}[/bold] {a['severity']} {a['status']} — {a['rule']['title']} ({a['rule']['name']})")
    out.print(f"group {a['group_key']}; {a['count']} event(s) from {a['first_seen']} to {a['last_seen']}; assignee {a.get('assignee') or '-'}")
    for ev in a.get("events", []):
        out.print(f"  {ev.get('@timestamp')} {ev.get('host', {}).get('name', '')} {ev.get('message') or ev.get('process', {}).get('command_line', '')}", highlight=False)
    for n in a.get("notes", []):
        out.print(f"  note by {n['author']} at {n['ts']}: {n['text']}")
    for h in a.get("history", []):
        out.print(f"  {h['ts']} {h['actor']}: {h['action']}" + (f" {h.get('from')} → {h.get('to')}" if h.get("from") else ""))


def _alert_action(alert_id: str, action: str, as_json: bool, **params: Any) -> None:
    view = gated("soc.alert.update", alert_id, {"action": action, **{k: v for k, v in params.items() if v is not None}})
    if as_json:
        emit_json(view.result if view.result is not None else view.as_dict())
    elif not pending_note(view):
        r = view.result
        out.print(f"{alert_id}: {r['status']}" + (f", verdict {r['verdict']}" if r.get("verdict") else "") + (f", assignee {r['assignee']}" if r.get("assignee") else ""))


@alerts_app.command("ack")
@changes("soc.alert.update")
def alerts_ack(alert_id: str, note: Optional[str] = None, as_json: bool = JsonOpt) -> None:
    """Acknowledge an open alert (you become the assignee unless someone is)."""
    _alert_action(alert_id, "ack", as_json, text=note)


@alerts_app.command("assign")
@changes("soc.alert.update")
def alerts_assign(alert_id: str, assignee: str, as_json: bool = JsonOpt) -> None:
    """Assign an alert to an analyst."""
    _alert_action(alert_id, "assign", as_json, assignee=assignee)


@alerts_app.command("note")
@changes("soc.alert.update")
def alerts_note(alert_id: str, text: str, as_json: bool = JsonOpt) -> None:
    """Add a note."""
    _alert_action(alert_id, "note", as_json, text=text)


@alerts_app.command("close")
@changes("soc.alert.update")
def alerts_close(alert_id: str, verdict: str = typer.Option(..., help="true_positive, false_positive or benign"),
                 note: Optional[str] = None, as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Close an alert with a verdict."""
    _alert_action(alert_id, "close", as_json, verdict=verdict, text=note)


exceptions_app = typer.Typer(help="Rule exceptions: owner, reason, expiry; changed through the gate.", no_args_is_help=True)
soc_app.add_typer(exceptions_app, name="exceptions")


@exceptions_app.command("list")
@reads("soc.read")
def exceptions_list(all_: bool = typer.Option(False, "--all", help="Include expired and revoked ones."), as_json: bool = JsonOpt) -> None:
    """Active exceptions (or all)."""
    from control_plane.soc import exceptions as ex

    principal()
    rows = ex.listing(context(), include_inactive=all_)
    if as_json:
        emit_json(rows)
        return
    t = Table("id", "rule", "match", "owner", "expires", "active", "reason")
    for r in rows:
        t.add_row(r["id"], r["rule_id"], ", ".join(f"{k}={v}" for k, v in r["match"].items()), r["owner"], r["expires"][:10],
                  "yes" if r["active"] else "no", r["reason"])  # fmt: skip
    out.print(t)


@exceptions_app.command("add")
@changes("soc.exception.change")
def exceptions_add(rule: str = typer.Argument(..., help="A rule id or file name, or * for every rule."),
                   match: list[str] = typer.Option(..., "--match", help="field=value (a CIDR for addresses); repeatable."),
                   reason: str = typer.Option(..., help="Why this is not a threat."), days: float = typer.Option(30, help="Expires after this many days (at most 180)."),
                   owner: Optional[str] = typer.Option(None, help="Who answers for it (default: you)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Add an exception (high risk: an approver sees it first)."""
    pairs = {}
    for m in match:
        if "=" not in m:
            raise GovctlError(f"--match {m!r} is not field=value")
        k, v = m.split("=", 1)
        pairs[k] = v
    view = gated("soc.exception.change", rule, {"action": "add", "match": pairs, "reason": reason, "days": days, **({"owner": owner} if owner else {})})
    emit_json(view.as_dict()) if as_json else (pending_note(view) or out.print(f"exception {view.result['id']} until {view.result['expires'][:10]}"))


@exceptions_app.command("revoke")
@changes("soc.exception.change")
def exceptions_revoke(exc_id: str, as_json: bool = JsonOpt) -> None:
    """End an exception now."""
    view = gated("soc.exception.change", exc_id, {"action": "revoke"})
    emit_json(view.as_dict()) if as_json else (pending_note(view) or out.print(f"revoked {exc_id}"))


@soc_app.command("decide")
@reads("soc.read")
def soc_decide(text: str = typer.Argument(..., help="The shell text to judge (put it after --)."),
               user: str = typer.Option("analyst", "--user", help="Who would type it."),
               source: str = typer.Option("127.0.0.1", "--source", help="From which address."),
               host: str = typer.Option("prim-app-1", "--host", help="On which host."),
               as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Try the inline decision on a command: allow, alert, require_approval or block, the rules that matched and why.

    Nothing runs and nothing is recorded; correlation context is asked of Elasticsearch as the gate would.
    """
    from control_plane.soc.inline import OperationEvent, analyze_cached

    rt = context()
    principal()
    d = rt.gate.soc.evaluate(OperationEvent("host.exec", host, {"command": text}, user, ("ops_engineer",), source))
    an = analyze_cached(text)
    doc = {**d.as_dict(), "commands": [c.line for c in an.commands], "findings": [f.__dict__ for f in an.findings]}
    if as_json:
        emit_json(doc)
        return
    colour = {"allow": "green", "alert": "yellow", "require_approval": "yellow", "block": "red"}[d.action]
    out.print(f"[{colour}]{d.action}[/{colour}]" + (" (degraded: correlation context unavailable)" if d.degraded else ""))
    for line in doc["commands"]:
        out.print(f"  runs: {line}", highlight=False)
    for r in d.reasons:
        out.print(f"  why:  {r}", highlight=False)
    if d.matched_rules:
        out.print(f"  rules: {', '.join(d.matched_rules)}", highlight=False)


@soc_app.command("ingest")
@reads("soc.ingest")
def soc_ingest(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
               fmt: str = typer.Option(..., "--format", help="syslog, auditd or json"),
               stats: bool = typer.Option(False, "--stats", help="Per program: lines parsed fully, partially, generically (kept as syslog events) or not at all."),
               as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Parse a log file into ECS events and index them (spooled if Elasticsearch is down, bad lines dead-lettered)."""
    from control_plane.soc.ingest import Ingestor

    rt = context()
    p = principal()
    with open(file, encoding="utf-8", errors="replace") as fh:
        res = Ingestor(rt.es, rt.settings.var / "soc" / "spool").ingest_lines(fh, fmt, source=str(file))
    rt.gate.record(p, "soc.ingest", target=str(file), params={"format": fmt}, details=res.as_dict())
    if as_json:
        emit_json(res.as_dict())
    else:
        out.print(f"indexed {res.indexed}, spooled {res.spooled}, replayed {res.replayed}, dead-lettered {res.dead_lettered}"
                  + (f" — {res.errors[0]}" if res.errors else ""))  # fmt: skip
        if stats:
            t = Table("program", "full", "partial", "generic", "unparsed", "total")
            for prog, row in sorted(res.stats.items(), key=lambda kv: -sum(kv[1].values())):
                # a program name comes from the log line itself: printed as text, never as rich markup
                t.add_row(escape(prog), *(str(row.get(k, 0)) for k in ("full", "partial", "generic", "unparsed")), str(sum(row.values())))
            out.print(t)


@soc_app.command("health")
@reads("soc.read")
def soc_health(as_json: bool = JsonOpt) -> None:
    """The engine's own state: each rule's detection checkpoint, lag and last error, and open engine-health alerts."""
    from control_plane.soc import alerts
    from control_plane.soc.detect import status

    principal()
    rt = context()
    rows = status(rt)
    open_alerts = [a for a in alerts.search(rt.es, kind="engine_health", limit=200) if a["status"] != "closed"]
    if as_json:
        emit_json({"rules": rows, "engine_health_alerts": open_alerts})
        return
    t = Table("rule", "checkpoint (UTC)", "behind s", "gaps filled", "last error")
    for r in rows:
        t.add_row(r["rule_id"], r["last_end"][:19], f"{r['behind_s']:.0f}", str(r["gaps_filled"]), (r["last_error"] or "-")[:80])
    out.print(t)
    if not open_alerts:
        out.print("no open engine-health alerts")
    for a in open_alerts:
        out.print(f"[red]{a['id']}[/red] {a['rule']['name']}: {a['summary']} (x{a['count']}, last {str(a['last_seen'])[:19]})", highlight=False)


APPS = (("soc", soc_app),)
