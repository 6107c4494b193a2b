"""Every CLI command and every API route maps to an operation, a read, a gate decision, or a stated public reason."""

from __future__ import annotations

from typing import Any

import click
import typer.main
from fastapi.routing import APIRoute

from control_plane import cli
from control_plane.apikit import Access
from control_plane.api.app import api_routes, create_app
from control_plane.config import load
from control_plane.gate.policy import load_policy
from control_plane.wiring import context_for

DECISIONS = {"approve", "reject", "cancel", "run"}
# routes that sit outside /api/v1 and serve machines without identity
META = {"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        path = f"{prefix} {name}".strip()
        if hasattr(cmd, "list_commands"):
            out += _commands(cmd, path)
        else:
            out.append((path, cmd.callback))
    return out


def _check(kind: str, names: tuple[str, ...], policy: Any) -> str | None:
    if kind == "changes":
        missing = [n for n in names if n != "*" and n not in policy.changes]
        return f"changes unknown operations {missing}" if missing else None
    if kind == "reads":
        return None if names[0] in policy.reads else f"reads {names[0]!r}, which the policy's reads: does not list"
    if kind == "decides":
        return None if names[0] in DECISIONS else f"decides {names[0]!r}, not one of {sorted(DECISIONS)}"
    if kind in ("public", "session"):
        return None if len(names[0]) > 10 else f"{kind} without a reason"
    return f"unknown mark {kind!r}"


def test_every_cli_command_is_mapped() -> None:
    """Each govctl command carries one access mark, and the mark names something the policy has."""
    policy = load_policy()
    commands = _commands(typer.main.get_command(cli.app))
    assert len(commands) >= 65, [c for c, _ in commands]
    problems = []
    for path, fn in commands:
        mark = getattr(fn, "__access__", None)
        if mark is None:
            problems.append(f"govctl {path}: no @changes/@reads/@decides/@public mark")
        elif (p := _check(*mark, policy)) is not None:
            problems.append(f"govctl {path}: {p}")
    assert not problems, "\n".join(problems)


def test_every_api_route_is_mapped(tmp_path: Any) -> None:
    """Each /api/v1 route and console page depends on exactly one access mark naming something the policy has; nothing else is exposed.

    Console forms that change anything carry a page mark (which also checks the CSRF token); only
    the sign-in form and the npm assets are public, and the one mount is our own CSS and JS.
    """
    from fastapi.routing import APIWebSocketRoute
    from starlette.routing import Mount

    from control_plane.console.web import PageAccess
    from tests.conftest import make_test_config, write_config

    ctx = context_for(load(write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))))
    policy = load_policy()
    problems, seen = [], 0
    for r in api_routes(create_app(ctx)):
        path = getattr(r, "path", "?")
        if path in META:
            continue
        if isinstance(r, Mount):
            assert path == "/static/console", f"unexpected mount {path}"
            continue
        assert isinstance(r, (APIRoute, APIWebSocketRoute)), f"unexpected route {path}"
        marks = [d.call for d in r.dependant.dependencies if isinstance(d.call, Access)]
        methods = sorted(getattr(r, "methods", None) or {"WEBSOCKET"})
        if not path.startswith("/api/v1/"):
            if marks and marks[0].kind == "public":
                assert path in ("/login", "/static/vendor/{name}"), f"{path} is public"
            elif "POST" in methods and marks and marks[0].kind != "reads":
                assert isinstance(marks[0], PageAccess), f"{path}: a console form without the CSRF-checking page mark"
        seen += 1
        if len(marks) != 1:
            problems.append(f"{methods} {path}: {len(marks)} access marks")
        elif (p := _check(marks[0].kind, (marks[0].name,), policy)) is not None:
            problems.append(f"{methods} {path}: {p}")
    assert seen >= 10
    assert not problems, "\n".join(problems)


def test_a_read_refuses_a_role_the_policy_leaves_out(tmp_path: Any) -> None:
    """The CLI and the API ask the same question: an ops engineer may not read the audit trail, an auditor may."""
    from control_plane.gate import Forbidden
    from control_plane.gate.models import Principal
    from tests.conftest import make_test_config, write_config

    ctx = context_for(load(write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))))
    ctx.gate.authorize_read(Principal("aud", ("auditor",), "127.0.0.1", "token"), "audit.read")
    try:
        ctx.gate.authorize_read(Principal("ops", ("ops_engineer",), "127.0.0.1", "token"), "audit.read")
    except Forbidden as exc:
        assert "audit.read" in exc.message
    else:
        raise AssertionError("an ops engineer read the audit trail")
    assert ctx.ledger.query(actor="ops")[0].outcome == "refused"
