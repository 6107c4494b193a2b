"""``govctl``: the command line of the control plane.

Every command prints a table or text for people and has ``--json`` for tools. Errors print one
line (what was wrong and what to do); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click
import typer
import yaml
from rich.console import Console
from rich.table import Table

from control_plane import __version__
from control_plane.config import effective, load
from control_plane.errors import GovctlError
from control_plane.runtime import Runtime, set_current

app = typer.Typer(help="Operations control plane of the city government cloud.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
services_app = typer.Typer(help="The local services: Elasticsearch, Prometheus, node_exporter, PostgreSQL.", no_args_is_help=True)
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
jobs_app = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="The platform's national-crypto keys.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False, "config": None}

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _rt() -> Runtime:
    rt = _state.get("rt")
    if rt is None:
        rt = _state["rt"] = set_current(Runtime(load(_state["config"])))
    return rt


def _emit_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str, ensure_ascii=False))


@app.callback()
def _main(
    config: Optional[Path] = typer.Option(None, "--config", "-c", envvar="GOVCTL_CONFIG", help="Path of govctl.yaml."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """Global options."""
    _state["config"] = str(config) if config else None
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


# -- services --------------------------------------------------------------------------------------


def _status_table(rows: list[Any]) -> Table:
    t = Table("service", "address", "pid", "health", "log")
    colours = {"healthy": "green", "stopped": "dim", "disabled": "dim"}
    for s in rows:
        c = colours.get(s.health, "red")
        t.add_row(s.name, s.address, str(s.pid or "-"), f"[{c}]{s.health}[/{c}]" + (f" ({s.detail})" if s.detail else ""), s.log)
    return t


@services_app.command("up")
def services_up(names: Optional[list[str]] = typer.Argument(None, help="Services to start (default: all enabled)."), as_json: bool = JsonOpt) -> None:
    """Start the services (idempotent) and wait until each is ready."""
    rt = _rt()
    started: list[str] = []

    def on_event(name: str, msg: str) -> None:
        if msg.startswith("starting"):
            started.append(name)
        if not as_json:
            err.print(f"[bold]{name}[/bold]: {msg}")

    try:
        with err.status("starting services…", spinner="dots") if not as_json else _null():
            rows = rt.supervisor.up(names, on_event=on_event)
    except GovctlError as exc:
        rt.audit("services.up", target=",".join(names or []) or "all", outcome="failed", details={"error": exc.message})
        raise
    rt.audit("services.up", target=",".join(names or []) or "all", details={"started": started})
    if as_json:
        _emit_json([r.as_dict() for r in rows])
    else:
        out.print(_status_table(rows))


@services_app.command("down")
def services_down(names: Optional[list[str]] = typer.Argument(None, help="Services to stop (default: all we started)."), as_json: bool = JsonOpt) -> None:
    """Stop the services govctl started (never anything else)."""
    rt = _rt()
    stopped = rt.supervisor.down(names)
    rt.audit("services.down", target=",".join(names or []) or "all", details={"stopped": stopped})
    if as_json:
        _emit_json({"stopped": stopped})
    else:
        out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services_app.command("status")
def services_status(as_json: bool = JsonOpt) -> None:
    """Each service's address, pid and health; exit 1 if an enabled service is not healthy."""
    rows = _rt().supervisor.status()
    if as_json:
        _emit_json([r.as_dict() for r in rows])
    else:
        out.print(_status_table(rows))
    if any(r.health not in ("healthy", "disabled") for r in rows):
        raise typer.Exit(1)


# -- config -----------------------------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: bool = JsonOpt) -> None:
    """Print the effective configuration (secrets as ****)."""
    s = load(_state["config"])
    data = effective(s)
    if as_json:
        _emit_json({"source": s.source, "config": data})
    else:
        out.print(f"# source: {s.source}", highlight=False)
        out.print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), highlight=False, end="")


# -- jobs -------------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(as_json: bool = JsonOpt) -> None:
    """Jobs with cadence, next run (Asia/Shanghai by default), pause state and last outcome."""
    from control_plane.scheduler import list_jobs
    from control_plane.scheduler.leader import LeaderLock

    rt = _rt()
    rows = list_jobs(rt)
    holder = LeaderLock(rt.engine, rt.settings.var / "run" / "scheduler.leader").holder()
    if as_json:
        _emit_json({"leader": holder, "jobs": rows})
        return
    t = Table("id", "cadence", "next run", "paused", "last run", "last status")
    for r in rows:
        t.add_row(r["id"], r["cadence"], r["next_run"] or "-", "yes" if r["paused"] else "no",
                  r["last_run"] or "-", r["last_status"] or "-")  # fmt: skip
    out.print(t)
    out.print(f"leader: {'pid ' + str(holder.get('pid')) + ' on ' + str(holder.get('host')) if holder else 'none running (start one with `govctl up`)'}")


@jobs_app.command("run")
def jobs_run(job_id: str, as_json: bool = JsonOpt) -> None:
    """Run a job now, in this process, with its own run key."""
    from control_plane.scheduler import run_job

    rt = _rt()
    res = run_job(rt, job_id, trigger="manual")
    rt.audit("jobs.run", target=job_id, outcome="succeeded" if res.status == "succeeded" else "failed", details=res.as_dict())
    if as_json:
        _emit_json(res.as_dict())
    else:
        out.print(f"{res.job_id}: {res.status} in {res.seconds}s — {res.detail}")
    if res.status == "failed":
        raise typer.Exit(1)


@jobs_app.command("pause")
def jobs_pause(job_id: str, as_json: bool = JsonOpt) -> None:
    """Pause a job (kept across restarts)."""
    _pause(job_id, True, as_json)


@jobs_app.command("resume")
def jobs_resume(job_id: str, as_json: bool = JsonOpt) -> None:
    """Resume a paused job."""
    _pause(job_id, False, as_json)


def _pause(job_id: str, paused: bool, as_json: bool) -> None:
    from control_plane.scheduler import set_paused

    rt = _rt()
    res = set_paused(rt, job_id, paused)
    rt.audit("jobs.pause" if paused else "jobs.resume", target=job_id)
    if as_json:
        _emit_json(res)
    else:
        out.print(f"{job_id}: {'paused' if res['paused'] else 'resumed, next run ' + str(res['next_run'])}")


@jobs_app.command("runs")
def jobs_runs(job_id: Optional[str] = typer.Argument(None), limit: int = 20, as_json: bool = JsonOpt) -> None:
    """The newest job runs and their outcome."""
    from control_plane.scheduler import recent_runs

    rows = recent_runs(_rt(), job_id, limit)
    if as_json:
        _emit_json(rows)
        return
    t = Table("run key", "trigger", "started", "finished", "status", "detail")
    for r in rows:
        t.add_row(r["run_key"], r["trigger"], r["started"], r["finished"] or "-", r["status"], (r["detail"] or "")[:80])
    out.print(t)


# -- audit ------------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: bool = JsonOpt) -> None:
    """Prove the whole chain and every checkpoint; exit 1 and name the first bad record if not."""
    rep = _rt().ledger.verify()
    if as_json:
        _emit_json(rep.as_dict())
    elif rep.ok:
        out.print(f"[green]ok[/green]: {rep.records} records, {rep.checkpoints} checkpoints ({rep.anchors} anchored), head {rep.head_seq} {rep.head_hash[:16]}…, {rep.seconds}s")
    else:
        err.print(f"[red]BROKEN[/red] at record {rep.first_bad}: {rep.problem}")
    for n in rep.notes if not as_json else []:
        err.print(f"note: {n}")
    if not rep.ok:
        raise typer.Exit(1)


def _when(value: str | None) -> str | None:
    """Accept ISO dates/times (read as Asia/Shanghai when naive) or relative ages like 30m, 2h, 7d."""
    if value is None:
        return None
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        t = datetime.now(timezone.utc) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    else:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise GovctlError(f"cannot read time {value!r}", hint="use ISO 8601 (2026-11-25T08:00) or an age like 30m, 2h, 7d") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=ZoneInfo(_rt().settings.scheduler.timezone))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@audit_app.command("show")
def audit_show(
    actor: Optional[str] = typer.Option(None, help="Only this actor."),
    operation: Optional[str] = typer.Option(None, help="Only this operation; 'deploy.*' matches a prefix."),
    target: Optional[str] = typer.Option(None, help="Only this target."),
    since: Optional[str] = typer.Option(None, help="From this time (ISO, or an age: 30m, 2h, 7d)."),
    until: Optional[str] = typer.Option(None, help="Before this time."),
    limit: int = typer.Option(50, min=1, max=10000),
    as_json: bool = JsonOpt,
) -> None:
    """Audit records, newest first, filtered by actor, operation, target and time."""
    recs = _rt().ledger.query(actor=actor, operation=operation, target=target, since=_when(since), until=_when(until), limit=limit)
    if as_json:
        _emit_json([r.as_dict() for r in recs])
        return
    t = Table("seq", "time (UTC)", "actor", "role", "source", "operation", "target", "decision", "outcome")
    for r in recs:
        t.add_row(str(r.seq), r.ts[:19], r.actor, r.role, r.source, r.operation, r.target, r.decision, r.outcome)
    out.print(t)


@audit_app.command("checkpoint")
def audit_checkpoint(as_json: bool = JsonOpt) -> None:
    """Sign a checkpoint over the chain head now."""
    cp = _rt().ledger.checkpoint()
    if as_json:
        _emit_json(cp)
    else:
        out.print(f"signed checkpoint at record {cp['seq']} with key {cp['key_id']}" if cp else "the head is already covered by a checkpoint")


# -- keys -------------------------------------------------------------------------------------------


@keys_app.command("show")
def keys_show(as_json: bool = JsonOpt) -> None:
    """The platform SM2 public key (PEM) and its key id."""
    pub = _rt().signer.public_key
    if as_json:
        _emit_json({"key_id": pub.key_id, "public_key_hex": pub.to_hex(), "pem": pub.to_pem()})
    else:
        out.print(f"key id: {pub.key_id}\n{pub.to_pem()}", highlight=False, end="")


# -- up ---------------------------------------------------------------------------------------------


@app.command()
def up() -> None:
    """Start everything: services, the HTTP API and the scheduler. Ctrl-C stops all of it."""
    import uvicorn

    from control_plane.api.app import create_app
    from control_plane.scheduler import SchedulerService
    from control_plane.services.supervisor import _port_free

    rt = _rt()
    s = rt.settings
    if not _port_free(s.api.host, s.api.port):
        raise GovctlError(f"api: port {s.api.port} on {s.api.host} is already in use", hint="stop the other process or set api.port")
    started: list[str] = []
    try:
        with err.status("starting services…", spinner="dots"):
            rt.supervisor.up(on_event=lambda n, m: (started.append(n) if m.startswith("starting") else None, err.print(f"[bold]{n}[/bold]: {m}")))
    except GovctlError as exc:
        stopped = rt.supervisor.down(started) if started else []
        rt.audit("control_plane.up", outcome="failed", details={"error": exc.message, "stopped_again": stopped})
        raise
    rt.audit("control_plane.up", details={"started": started})
    sched = SchedulerService(rt) if s.scheduler.enabled else None
    if sched:
        sched.start()
    server = uvicorn.Server(uvicorn.Config(create_app(rt, sched), host=s.api.host, port=s.api.port, log_level="warning"))
    out.print(_status_table(rt.supervisor.status()))
    out.print(f"API        {s.api.url}  (OpenAPI {s.api.url}/docs, health {s.api.url}/healthz, metrics {s.api.url}/metrics)")
    out.print(f"scheduler  {'on, ' + s.scheduler.timezone if sched else 'off'}; state DB {s.state_url().split('://')[0]}; var {s.var}")
    out.print("Ctrl-C stops the API, the scheduler and the services this command started.")
    try:
        server.run()
    finally:
        if sched:
            sched.stop()
        stopped = rt.supervisor.down(started) if started else []
        rt.audit("control_plane.down", details={"stopped": stopped})
        err.print(f"stopped: API, scheduler{', ' + ', '.join(stopped) if stopped else ''}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def main() -> None:
    """Console entry point: one-line errors, exit codes, --debug tracebacks."""
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes here instead of raising them
    except GovctlError as exc:
        if _state.get("debug"):
            raise
        err.print(f"[red]error:[/red] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
