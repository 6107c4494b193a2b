"""``govctl``: the command line of the control plane.

Every command prints a table or text for people and has ``--json`` for tools. Errors print one
line (what was wrong and what to do); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer
import yaml

from control_plane import __version__
from control_plane.clikit import JsonOpt, changes, context, emit_json, err, gated, out, principal, public, read_token, reads, state
from control_plane.config import effective
from control_plane.errors import GovctlError
from control_plane.clikit import factory
from control_plane.wiring import context_for, parts

app = typer.Typer(help="Operations control plane of the city government cloud.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
config_app = typer.Typer(help="The effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _mount() -> None:
    """Each domain's typer sub-app, in the composition root's order."""
    for mod in parts("cli"):
        for name, sub in mod.APPS:
            app.add_typer(sub, name=name)


_mount()
factory["context"] = context_for  # every command's context has all the domains plugged in


@app.callback()
def _main(
    config: Optional[Path] = typer.Option(None, "--config", "-c", envvar="GOVCTL_CONFIG", help="Path of govctl.yaml."),
    profile: Optional[str] = typer.Option(None, "--profile", envvar="GOVCTL_PROFILE", help="single (default) or cluster: defaults laid under govctl.yaml."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    token: Optional[str] = typer.Option(None, "--token", hidden=True, help="Refused: a token on the command line is readable by every local user."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file (mode 0600, yours) holding your API token; or set GOVCTL_TOKEN."),
) -> None:
    """Global options."""
    state["config"] = str(config) if config else None
    if profile:
        os.environ["GOVCTL_PROFILE"] = profile  # read by config.load, here and in the processes this one starts
    if token is not None:
        err.print("error: --token VALUE is refused: every local user can read a command line in /proc "
                  "(put the token in GOVCTL_TOKEN, or in a 0600 file given with --token-file)")
        raise typer.Exit(2)
    state["token"] = read_token(token_file) if token_file else (os.environ.get("GOVCTL_TOKEN") or None)
    state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:  # the client's own retry chatter (a node not up yet, retrying the next): our code says what failed in the end
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)


@app.command()
@public("prints the version")
def version() -> None:
    """Print the version."""
    out.print(__version__)


# -- config -----------------------------------------------------------------------------------------


@config_app.command("show")
@reads("config.read")
def config_show(as_json: bool = JsonOpt) -> None:
    """Print the effective configuration (secrets as ****)."""
    s = context().settings
    data = effective(s)
    if as_json:
        emit_json({"source": s.source, "config": data})
    else:
        out.print(f"# source: {s.source}", highlight=False)
        out.print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), highlight=False, end="")


# -- up ---------------------------------------------------------------------------------------------


@app.command()
@changes("services.up")
def up(api_port: Optional[int] = typer.Option(None, "--api-port", min=1, max=65535, help="Serve the API and console here instead of api.port "
                                                                                        "(a second control plane beside the first)."),
       bastion: bool = typer.Option(True, "--bastion/--no-bastion", help="Also run the bastion's SSH gateway (one per host).")) -> None:
    """Start everything: services, the HTTP API and console, the scheduler and the bastion. Ctrl-C stops all of it.

    Several control planes may run on one state database: one of them leads the scheduler at a
    time (the others take over within the leader poll when it dies). Without --api-port, one more
    is started on each of api.standby_ports (the cluster profile: 8701).
    """
    import threading
    import time

    import uvicorn

    from control_plane.api.app import create_app, server_config
    from control_plane.scheduler import SchedulerService
    from control_plane.services import control_planes
    from control_plane.services.cli import status_table
    from control_plane.services.supervisor import _port_free

    rt = context()
    s = rt.settings
    port = api_port or s.api.port
    if not _port_free(s.api.host, port):
        raise GovctlError(f"api: port {port} on {s.api.host} is already in use", hint="stop the other process, set api.port, or give --api-port")
    boot: list[str] = []
    booted: list[str] = []  # what of the state database this command started (stopped last, after the final record)
    if s.services.postgres.ha.members > 1 and s.state.url is None:
        # the state database is the Patroni cluster: it must run before anything can be recorded in it
        boot = [n for n in rt.supervisor.ORDER if n == "etcd" or n.startswith("postgres")]
        with err.status("starting the state database (etcd, Patroni)…", spinner="dots"):
            rt.supervisor.up(boot, on_event=lambda n, m: booted.append(n) if m.startswith("starting") else None)
    with err.status("starting services…", spinner="dots"):
        if boot:
            rt.gate.record(principal(), "services.up", target=",".join(boot),
                           details={"bootstrap": "the state database, started before it could record this"})  # fmt: skip
        view = gated("services.up", "all", {"rollback": True}, reason="govctl up")
    started = view.result["started"]
    sched = SchedulerService(rt) if s.scheduler.enabled else None
    if sched:
        sched.start()
    server = uvicorn.Server(server_config(s, create_app(rt, sched), port=port))  # proxy headers only from configured proxies
    gw = None
    if s.bastion.enabled and bastion:
        from control_plane.bastion.gateway import Gateway

        if not _port_free(s.bastion.host, s.bastion.port):
            raise GovctlError(f"bastion: port {s.bastion.port} on {s.bastion.host} is already in use", hint="stop the other process or set bastion.port")
        gated("bastion.serve", "gateway")
        gw = Gateway(rt)
        gw.serve_in_thread()
    standbys, kept = control_planes.start_standbys(s) if api_port is None else ([], [])
    pidf = control_planes.mark_running(s, port)
    if standbys:
        with err.status(f"starting {len(standbys)} standby control plane(s)…", spinner="dots"):
            control_planes.wait_serving(s, standbys)
    url = f"http://{s.api.host}:{port}"

    def announce() -> None:
        """Where everything is, printed once the API answers (not before: an address printed early is refused when followed)."""
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        out.print(status_table(rt.supervisor.status() + control_planes.status(s)))
        out.print(f"console    {url}/  (控制台, Chinese by default; sign in with your password and TOTP: govctl iam password sets it)")
        out.print(f"API        {url}/api/v1  (OpenAPI {url}/docs, health {url}/healthz, metrics {url}/metrics)")
        out.print(f"audit key  {rt.signer.public_key.key_id}  (write it down: `govctl audit verify --pin {rt.signer.public_key.key_id}` proves the history against it)")
        out.print(f"scheduler  {'on, ' + s.scheduler.timezone if sched else 'off'}; state DB {s.state_url().split('://')[0]}; var {s.var}")
        for sp in s.api.standby_ports if api_port is None else []:
            out.print(f"standby    http://{s.api.host}:{sp}/  (another control plane on the same state DB: console, API, scheduler standby"
                      f"{'; already running, left as it is' if f'{s.api.host}:{sp}' in kept else ''})")  # fmt: skip
        if gw:
            out.print(f"bastion    ssh -p {s.bastion.port} USER@{s.bastion.host}  (USER%HOST straight to a host; sessions recorded, commands checked)")
        if not s.report.endpoint or not s.report.province_public_key:
            out.print("province   no endpoint configured: monthly reports are built and signed, not submitted (set report.endpoint and report.province_public_key)")
        out.print("Ctrl-C stops the API, the scheduler and the services this command started.")

    threading.Thread(target=announce, name="govctl-up-announce", daemon=True).start()
    try:
        server.run()
    finally:
        control_planes.stop_standbys(standbys)
        pidf.unlink(missing_ok=True)
        if sched:
            sched.stop()
        if gw:
            gw.shutdown()
        # recorded and checkpointed while the state DB and the object store still run; then the services, the state DB last
        rt.gate.record(principal(), "control_plane.down", details={"stopping": [*started, *booted], "reason": "Ctrl-C on govctl up"})
        rt.ledger.close()
        stopped = rt.supervisor.down(started) if started else []
        stopped += rt.supervisor.down(booted) if booted else []
        err.print(f"stopped: API, scheduler{', ' + str(len(standbys)) + ' standby control plane(s)' if standbys else ''}"
                  f"{', ' + ', '.join(stopped) if stopped else ''}")  # fmt: skip


def main() -> None:
    """Console entry point: one-line errors, exit codes, --debug tracebacks."""
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes here instead of raising them
    except GovctlError as exc:
        if state.get("debug"):
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
