"""The web terminal: an xterm.js page whose WebSocket is a bastion shell session, judged line by line like one over SSH.

The person signed in to the console with password and TOTP (the bastion's SSH login asks for a
key and TOTP); the same login rules apply (source networks, hours, locks, grants, session limits),
the session is recorded and sealed the same way, every Enter is judged by the same code path
(``_ShellSession``), and kills and locks reach it within a second. The WebSocket takes the session
cookie only from a page of this site (Origin checked; the cookie is SameSite=Strict).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncssh
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from control_plane.apikit import Access
from control_plane.console import session as sessions
from control_plane.console.web import page_reads, render

router = APIRouter(include_in_schema=False)
log = logging.getLogger("govctl.console")


class SocketAccess(Access):
    """The terminal socket's mark: the session cookie's person, from a page of this very site."""

    async def __call__(self, websocket: WebSocket) -> Any:  # type: ignore[override]
        """The web session, or the socket is refused."""
        ctx = websocket.app.state.ctx
        origin = websocket.headers.get("origin", "")
        host = websocket.headers.get("host", "")
        if not host or origin not in (f"http://{host}", f"https://{host}"):
            raise PermissionError(f"cross-site terminal socket refused (origin {origin!r})")
        source = websocket.client.host if websocket.client else "unknown"
        s = sessions.lookup(ctx, websocket.cookies.get(sessions.COOKIE), source=source)
        if self.kind == "reads":
            ctx.gate.authorize_read(s.principal, self.name)
        return s


async def _close_quietly(websocket: WebSocket) -> None:
    try:
        await websocket.close()
    except Exception:  # noqa: BLE001 - already closed by the browser
        pass


class _Stdin:
    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes | tuple[int, int] | None] = asyncio.Queue()

    async def read(self, _n: int) -> bytes:
        item = await self.q.get()
        if item is None:
            return b""
        if isinstance(item, tuple):
            raise asyncssh.TerminalSizeChanged(item[0], item[1], 0, 0)
        return item


class _Stdout:
    def __init__(self) -> None:
        self.q: asyncio.Queue[bytes | None] = asyncio.Queue()

    def write(self, data: bytes) -> None:
        self.q.put_nowait(bytes(data))


class WsProcess:
    """What a bastion shell session needs of an SSH server process, over a WebSocket."""

    def __init__(self, width: int, height: int) -> None:
        self.stdin, self.stdout, self.stderr = _Stdin(), _Stdout(), _Stdout()
        self.size = (width, height)
        self.exit_status: int | None = None

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        return (*self.size, 0, 0)

    def get_terminal_type(self) -> str:
        return "xterm-256color"

    def exit(self, status: int) -> None:
        self.exit_status = status
        self.stdout.q.put_nowait(None)


def web_gateway(app: Any) -> Any:
    """This app's gateway for web sessions (a Gateway that does not listen; its timers run on the app's loop)."""
    from control_plane.bastion.gateway import Gateway

    gw = getattr(app.state, "web_gateway", None)
    if gw is None:
        ctx = app.state.ctx
        gw = Gateway(ctx)
        gw.name = f"web:{ctx.settings.api.host}:{ctx.settings.api.port}"
        gw.loop = asyncio.get_running_loop()
        gw.recover()
        gw._ticker = asyncio.create_task(gw._tick())
        app.state.web_gateway = gw
    return gw


@router.get("/terminal")
def terminal_page(request: Request, s: Any = Depends(page_reads("ops.read"))) -> Response:
    from control_plane.bastion import store

    reach = store.reachable(request.app.state.ctx, s.user)
    return render(request, "terminal.html", hosts=[{"name": a.name, "address": a.address, "pool": a.pool, "zone": a.zone, "accounts": accts} for a, accts in reach])


@router.websocket("/terminal/ws")
async def terminal_socket(websocket: WebSocket, host: str = "", account: str = "", cols: int = 120, rows: int = 32,
                          s: Any = Depends(SocketAccess("session", "a bastion shell as the signed-in person; every line is judged by the gate"))) -> None:  # fmt: skip
    from control_plane.bastion import store
    from control_plane.bastion.gateway import Login, _ShellSession, acl_refusal

    await websocket.accept()
    ctx = websocket.app.state.ctx
    proc = WsProcess(max(20, min(cols, 500)), max(5, min(rows, 200)))

    async def say(text: str) -> None:
        await websocket.send_bytes(f"\r\n\x1b[1;31m[堡垒机] {text}\x1b[0m\r\n".encode())

    try:
        refusal = await asyncio.to_thread(acl_refusal, ctx, s.user, s.source)
        if refusal:
            ctx.gate.record(s.principal, "bastion.login", target=host, decision="deny", outcome="refused", details={"error": refusal, "via": "console"})
            await say(refusal)
            return
        a = await asyncio.to_thread(store.asset, ctx, host)
        accts = await asyncio.to_thread(store.granted, ctx, s.user, a, account or None)
        if not accts:
            await say(f"没有访问 {account + '@' if account else ''}{a.name} 的授权 / no grant for {account or 'any account'} on {a.name}")
            return
        gw = web_gateway(websocket.app)
        login = Login(s.user, s.roles, s.source, a.name, accts[0])
        ctx.gate.record(login.principal, "bastion.login", target=a.name, details={"factor": "console password+totp", "via": "console"})
        up = await gw._upstream(a, accts[0])
    except (store.BastionError, OSError, asyncssh.Error) as exc:
        await say(getattr(exc, "message", str(exc)))
        await websocket.close()
        return
    shell = _ShellSession(gw, SimpleNamespace(login=login), proc, up, a, accts[0])  # type: ignore[arg-type]

    async def pump_out() -> None:
        while True:
            data = await proc.stdout.q.get()
            if data is None:
                return
            await websocket.send_bytes(data)

    async def pump_in() -> None:
        while True:
            msg = await websocket.receive()
            if msg.get("type") == "websocket.disconnect":
                proc.stdin.q.put_nowait(None)
                return
            if msg.get("bytes") is not None:
                proc.stdin.q.put_nowait(msg["bytes"][:65536])
            elif msg.get("text"):
                try:
                    size = json.loads(msg["text"]).get("resize")
                    w, h = int(size[0]), int(size[1])
                except (ValueError, TypeError, AttributeError, IndexError, KeyError):
                    continue
                proc.size = (max(20, min(w, 500)), max(5, min(h, 200)))
                proc.stdin.q.put_nowait(proc.size)

    tasks = [asyncio.create_task(shell.run()), asyncio.create_task(pump_out()), asyncio.create_task(pump_in())]
    try:
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait_for(tasks[0], timeout=10)
    except (WebSocketDisconnect, asyncio.TimeoutError):
        pass
    finally:
        for t in tasks[1:]:
            t.cancel()
        up.close()
        await _close_quietly(websocket)


@router.websocket("/sessions/{session_id}/watch")
async def watch_socket(websocket: WebSocket, session_id: str, s: Any = Depends(SocketAccess("reads", "bastion.read"))) -> None:
    """A live session, read-only: its recording followed as chunks are sealed (about a second behind); nothing typed here goes anywhere."""
    import threading

    from control_plane.bastion import store
    from control_plane.bastion.recording import follow, recordings_key

    ctx = websocket.app.state.ctx
    sess = await asyncio.to_thread(store.get_session, ctx, session_id)
    await websocket.accept()
    ctx.gate.record(s.principal, "bastion.watch", target=session_id, details={"via": "console"})
    kek = await asyncio.to_thread(recordings_key, ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations)
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[str | None] = asyncio.Queue()
    gone = threading.Event()
    checked = [0.0]

    def stop() -> bool:
        import time

        if gone.is_set():
            return True
        if time.monotonic() - checked[0] < 1:
            return False
        checked[0] = time.monotonic()
        return bool(store.get_session(ctx, session_id)["ended"])

    def reader() -> None:
        try:
            for ev in follow(Path(sess["recording"]), kek, stop=stop):
                if isinstance(ev, list) and len(ev) == 3 and ev[1] == "o":
                    loop.call_soon_threadsafe(q.put_nowait, ev[2])
        except Exception as exc:  # noqa: BLE001 - a broken recording ends the watch with its reason
            loop.call_soon_threadsafe(q.put_nowait, f"\r\n[录像校验失败 / recording failed verification: {exc}]\r\n")
        loop.call_soon_threadsafe(q.put_nowait, None)

    threading.Thread(target=reader, name=f"watch-{session_id}", daemon=True).start()

    async def drain_input() -> None:
        while (await websocket.receive()).get("type") != "websocket.disconnect":
            pass  # a watcher's keys go nowhere
        gone.set()

    drain = asyncio.create_task(drain_input())
    try:
        while (text := await q.get()) is not None:
            await websocket.send_text(text)
        await websocket.send_text("\r\n[会话已结束 / the session ended]\r\n")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        gone.set()
        drain.cancel()
        await _close_quietly(websocket)
