"""``govctl bastion``: keys, grants, sessions, replay, watch, kill, lock, credentials, and the gateway itself."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from control_plane.clikit import JsonOpt, changes, context, emit_json, gated, out, pending_note, principal, reads

bastion_app = typer.Typer(help="The operations-audit bastion (堡垒机): SSH sessions through the gate.", no_args_is_help=True)
keys_app = typer.Typer(help="People's SSH keys for the bastion.", no_args_is_help=True)
bastion_app.add_typer(keys_app, name="keys")


def _me() -> str:
    return str(principal().name)


@keys_app.command("add")
@changes("bastion.key.add")
def keys_add(pub: Path = typer.Argument(..., help="Your public key file (~/.ssh/id_ed25519.pub)."),
             user: Optional[str] = typer.Option(None, help="Whose key (a security administrator may register anyone's)."),
             as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Register an SSH public key for logging in to the bastion."""
    text = pub.read_text(encoding="utf-8").strip()
    view = gated("bastion.key.add", user or _me(), {"public_key": text})
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"registered {view.result['fingerprint']} for {view.result['user']}")


@keys_app.command("remove")
@changes("bastion.key.remove")
def keys_remove(fingerprint: str, user: Optional[str] = typer.Option(None, help="Whose key."), as_json: bool = JsonOpt) -> None:
    """Remove a registered key."""
    view = gated("bastion.key.remove", user or _me(), {"fingerprint": fingerprint})
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"removed {fingerprint}")


@keys_app.command("list")
@reads("bastion.read")
def keys_list(user: Optional[str] = None, as_json: bool = JsonOpt) -> None:
    """Registered keys (public halves)."""
    from control_plane.bastion import store

    rows = store.list_keys(context(), user)
    if as_json:
        emit_json(rows)
        return
    t = Table("user", "fingerprint", "comment", "added")
    for r in rows:
        t.add_row(r["user"], r["fingerprint"], r["comment"], r["added"])
    out.print(t)


@bastion_app.command("grant")
@changes("bastion.grant.add")
def grant(user: str, hosts: str = typer.Option(..., help="Comma-separated host names, globs, pool:primary|backup, stack:NAME or *."),
          account: str = typer.Option("root", help="The system account on the hosts."),
          hours: float = typer.Option(8, help="How long the grant lasts."),
          valid_from: Optional[str] = typer.Option(None, "--from", help="When it starts (ISO 8601; default now)."),
          reason: str = typer.Option("", help="Why (shown to the approver, recorded)."), as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Let USER open sessions as ACCOUNT on HOSTS for a time. High risk: an approver signs it off."""
    params = {"hosts": [h.strip() for h in hosts.split(",") if h.strip()], "account": account, "hours": hours, "reason": reason}
    if valid_from:
        params["valid_from"] = valid_from
    view = gated("bastion.grant.add", user, params, reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        r = view.result
        out.print(f"grant {r['id']}: {r['user']} as {r['account']} on {', '.join(r['hosts'])} until {r['valid_to']}")


@bastion_app.command("revoke")
@changes("bastion.grant.revoke")
def revoke(grant_id: str, as_json: bool = JsonOpt) -> None:
    """End a grant now."""
    view = gated("bastion.grant.revoke", grant_id)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"revoked {grant_id}")


@bastion_app.command("grants")
@reads("bastion.read")
def grants(user: Optional[str] = None, active: bool = typer.Option(False, help="Only grants in force now."), as_json: bool = JsonOpt) -> None:
    """Asset grants: who, which hosts, which account, from when to when."""
    from control_plane.bastion import store

    rows = store.list_grants(context(), user, active_only=active)
    if as_json:
        emit_json(rows)
        return
    t = Table("id", "user", "hosts", "account", "from", "to", "revoked", "approved in")
    for r in rows:
        t.add_row(r["id"], r["user"], ",".join(r["hosts"]), r["account"], r["valid_from"], r["valid_to"], r["revoked"] or "-", r["op_id"] or "-")
    out.print(t)


@bastion_app.command("sessions")
@reads("bastion.read")
def sessions(all_: bool = typer.Option(False, "--all", help="Ended sessions too."), user: Optional[str] = None, limit: int = 50,
             as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Live sessions (with --all, ended ones and how they ended)."""
    from control_plane.bastion import store

    rows = store.list_sessions(context(), live_only=not all_, user=user, limit=limit)
    if as_json:
        emit_json(rows)
        return
    t = Table("id", "user", "account@host", "kind", "from", "started", "ended", "how", "commands")
    for r in rows:
        t.add_row(r["id"], r["user"], f"{r['account']}@{r['host']}", r["kind"], r["source"], r["started"], r["ended"] or "live",
                  r["end_reason"] or "-", str(r["commands"]))  # fmt: skip
    out.print(t)


def _recording(sid: str) -> tuple[Path, bytes, dict]:
    from control_plane.bastion import store
    from control_plane.bastion.recording import recordings_key

    ctx = context()
    s = store.get_session(ctx, sid)
    return Path(s["recording"]), recordings_key(ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations), s


@bastion_app.command("verify")
@reads("bastion.read")
def verify_cmd(session_id: str, as_json: bool = JsonOpt) -> None:
    """Check a recording: every chunk decrypts and chains, the end is signed, and the ledger's final hash matches."""
    from control_plane.bastion.recording import verify

    path, kek, s = _recording(session_id)
    v = verify(path, kek, context().signer.public_key, expect_final=s["final_sm3"] or None)
    if as_json:
        emit_json(v.as_dict())
        return
    state = "complete, signed" if v.complete else "cut short (no end record): verified up to its last whole chunk"
    out.print(f"{session_id}: {v.chunks} chunks, chain {v.final_sm3[:16]}…, {state}; end: {s['end_reason'] or 'live'}")


@bastion_app.command("replay")
@reads("bastion.read")
def replay(session_id: str, speed: float = typer.Option(1.0, help="Playback speed (0: all at once)."),
           log: bool = typer.Option(False, "--log", help="Print the command log (decisions) instead of playing the output."),
           cast: bool = typer.Option(False, "--cast", help="Write the plain asciicast v2 file to stdout (for asciinema-player).")) -> None:  # fmt: skip
    """Play a recording in this terminal (it is verified first)."""
    import json

    from control_plane.bastion.recording import verify

    path, kek, s = _recording(session_id)
    v = verify(path, kek, context().signer.public_key, expect_final=s["final_sm3"] or None, events=True)
    if cast:
        for ev in v.events:
            sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
        return
    if log:
        t = Table("t (s)", "decision: command")
        for ev in v.events[1:]:
            if ev[1] == "m":
                t.add_row(f"{ev[0]:.1f}", ev[2])
        out.print(t)
        return
    last = 0.0
    for ev in v.events[1:]:
        if ev[1] != "o":
            continue
        if speed > 0:
            time.sleep(min(max(ev[0] - last, 0) / speed, 2.0))
        last = ev[0]
        sys.stdout.write(ev[2])
        sys.stdout.flush()
    sys.stdout.write(f"\r\n[replay of {session_id} ends: {v.chunks} chunks verified]\r\n")


@bastion_app.command("watch")
@reads("bastion.read")
def watch(session_id: str) -> None:
    """Follow a live session read-only (what the person sees, about a second behind). Ctrl-C stops watching, not the session."""
    from control_plane.bastion import store
    from control_plane.bastion.recording import follow

    path, kek, _ = _recording(session_id)
    ctx = context()
    checked = [0.0]

    def stop() -> bool:
        if time.monotonic() - checked[0] < 1:
            return False
        checked[0] = time.monotonic()
        return bool(store.get_session(ctx, session_id)["ended"])

    try:
        for ev in follow(path, kek, stop=stop):
            if isinstance(ev, list) and len(ev) == 3 and ev[1] == "o":
                sys.stdout.write(ev[2])
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    sys.stdout.write(f"\r\n[watch of {session_id} ends]\r\n")


@bastion_app.command("kill")
@changes("bastion.session.kill")
def kill(session_id: str, as_json: bool = JsonOpt) -> None:
    """End a live session (within a second)."""
    view = gated("bastion.session.kill", session_id)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"{session_id}: ending")


@bastion_app.command("lock")
@changes("bastion.lock")
def lock(user: str, reason: str = typer.Option("", help="Why (recorded)."), as_json: bool = JsonOpt) -> None:
    """Lock a person out of the bastion: every session of theirs ends within a second, new logins are refused."""
    view = gated("bastion.lock", user, {"reason": reason}, reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"{user}: locked")


@bastion_app.command("unlock")
@changes("bastion.unlock")
def unlock(user: str, reason: str = typer.Option("", help="Why (recorded)."), as_json: bool = JsonOpt) -> None:
    """Lift a lock (high risk: an approver signs it off)."""
    view = gated("bastion.unlock", user, reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"{user}: unlocked")


@bastion_app.command("rotate")
@changes("bastion.credentials.rotate")
def rotate(host: str, reason: str = typer.Option("", help="Why (recorded)."), as_json: bool = JsonOpt) -> None:
    """Give a host a new bastion key (installed with the old one, checked, the old one removed)."""
    view = gated("bastion.credentials.rotate", host, reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        out.print(f"{host}: new bastion key installed")


@bastion_app.command("hosts")
@reads("bastion.read")
def hosts(as_json: bool = JsonOpt) -> None:
    """The hosts the bastion can reach (every deployed host), with pool and zone."""
    from control_plane.bastion import store

    rows = [a.__dict__ for a in store.assets(context()).values()]
    if as_json:
        emit_json(rows)
        return
    t = Table("host", "address", "pool", "zone", "stack")
    for r in sorted(rows, key=lambda r: r["name"]):
        t.add_row(r["name"], r["address"], r["pool"], r["zone"], r["stack"])
    out.print(t)


@bastion_app.command("serve")
@changes("bastion.serve")
def serve() -> None:
    """Run the SSH gateway alone in the foreground (govctl up runs it with everything else). Ctrl-C stops it."""
    import asyncio

    from control_plane.bastion.gateway import Gateway

    ctx = context()
    gated("bastion.serve", "gateway")
    gw = Gateway(ctx)

    async def main() -> None:
        await gw.start()
        out.print(f"bastion    ssh -p {ctx.settings.bastion.port} USER@{ctx.settings.bastion.host}  (USER%HOST goes straight to a host)")
        try:
            await asyncio.Event().wait()
        finally:
            await gw.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


APPS = (("bastion", bastion_app),)
