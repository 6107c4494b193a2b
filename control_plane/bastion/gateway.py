"""The SSH gateway: people in, judged lines out, every byte recorded.

``ssh -p 2222 alice@bastion`` lists the hosts alice may open; ``alice%prim-app-1@bastion`` goes
straight to one (``alice%root@prim-app-1`` names the account too). Authentication is the
person's registered key and then a TOTP code (keyboard-interactive; the key alone is a partial
success), after the login rules (source network, hours, lock, failures). Upstream, the gateway
logs in with that host's own key and pins the host key the deployment recorded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import asyncssh

from control_plane import clock
from control_plane.bastion import shellint, store
from control_plane.bastion.decide import Verdict, incomplete, judge
from control_plane.bastion.recording import Recorder, recordings_key
from control_plane.operation import Principal

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.bastion")
LOGIN = __import__("re").compile(r"^([a-z][a-z0-9_.-]{0,31})(?:%(?:([a-z_][a-z0-9_-]{0,31})@)?([a-z][a-z0-9-]{0,62}))?$")
SENSITIVE = ("/etc/", "/boot/", "/root/.ssh/", "/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/var/spool/cron/", "/var/log/")
CN = ZoneInfo("Asia/Shanghai")
UPSTREAM_HANDSHAKES = 8  # per host, below sshd's MaxStartups start of 10


def _say(text: str) -> bytes:
    return text.encode()


@dataclass
class Login:
    """Who logged in, from where, to what (after authentication)."""

    user: str
    roles: tuple[str, ...]
    source: str
    host: str | None
    account: str | None

    @property
    def principal(self) -> Principal:
        """How the gate sees this person's requests."""
        return Principal(self.user, self.roles, self.source, "bastion")


def acl_refusal(ctx: Context, user: str, source: str, now: datetime | None = None) -> str | None:
    """Why the login rules refuse ``user`` from ``source`` now (Chinese first), or None."""
    acl = ctx.settings.bastion.acl
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return f"来源地址无法识别 / unknown source address {source!r}"
    if not any(ip in ipaddress.ip_network(n, strict=False) for n in acl.networks):
        return f"不允许从 {source} 登录 / logins from {source} are not allowed (bastion.acl.networks)"
    local = (now or clock.now()).astimezone(CN)
    start, end = acl.hours.split("-")
    hm = f"{local.hour:02d}:{local.minute:02d}"
    if not start <= hm < end:
        return f"当前时段不允许登录（{acl.hours}）/ logins are allowed {acl.hours} Asia/Shanghai only"
    if user in store.locked(ctx):
        return "账号已被锁定，请联系安全管理员 / this account is locked on the bastion; ask a security administrator"
    return None


class _Server(asyncssh.SSHServer):
    """One client connection: its authentication state."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.ctx = gw.ctx
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = ""
        self.login: Login | None = None
        self._want: tuple[str, str | None, str | None] | None = None
        self._key_ok = False
        self._refusal: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.source = str((conn.get_extra_info("peername") or ("?",))[0])
        # The key is the first factor: its success is reported as partial so the client goes on to the TOTP step.
        orig_validate, orig_fail = conn.validate_public_key, conn.send_userauth_failure

        async def validate(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
            ok = await orig_validate(username, key_data, msg, signature)
            if ok and msg:  # the signature checked out: the person holds the key
                self._key_ok = True
                self._partial = True
                return False
            return ok

        def fail(partial_success: bool) -> None:
            partial, self._partial = getattr(self, "_partial", False), False
            orig_fail(partial_success or partial)

        conn.validate_public_key = validate  # type: ignore[method-assign]
        conn.send_userauth_failure = fail  # type: ignore[method-assign]

    def connection_lost(self, exc: Exception | None) -> None:
        self.gw.conns.pop(self.conn, None)

    def begin_auth(self, username: str) -> bool:
        from control_plane.gate import iam

        m = LOGIN.fullmatch(username)
        if m is None:
            self._refusal = "登录名格式应为 用户名 或 用户名%主机 / log in as USER or USER%HOST"
        else:
            self._want = (m.group(1), m.group(2), m.group(3))
            user = m.group(1)
            person = iam.get_user(self.ctx, user)
            if person is None or person.get("disabled") or not person.get("totp_secret"):
                # the same words whichever it is: the banner must not tell a stranger which names exist
                self._refusal = "认证失败；未绑定动态口令的用户请先执行 govctl iam enrol / authentication failed (enrol TOTP first if you have not)"
            elif iam.locked_out(self.ctx, f"bastion:user:{user}", f"bastion:ip:{self.source}"):
                self._refusal = "登录失败次数过多，已临时锁定 15 分钟 / too many failed logins: locked for 15 minutes"
            else:
                self._refusal = acl_refusal(self.ctx, user, self.source)
        if self._refusal and self.conn is not None:
            self.conn.send_auth_banner(f"[堡垒机] {self._refusal}\r\n")
        return True

    def public_key_auth_supported(self) -> bool:
        return not self._key_ok  # once the key is proven, only the second factor is left to offer

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._refusal or self._want is None:
            return False
        ok = store.user_of_key(self.ctx, self._want[0], key.export_public_key().decode())
        if not ok:
            self._failed()
        return ok

    def kbdint_auth_supported(self) -> bool:
        return True

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        if self._refusal or not self._key_ok:
            return False
        return ("govctl bastion", "请输入动态口令（TOTP）/ Enter your one-time password", "", [("动态口令 / OTP: ", False)])

    def validate_kbdint_response(self, username: str, responses: Any) -> Any:
        from control_plane.gate import iam

        if self._refusal or not self._key_ok or self._want is None or len(responses) != 1:
            return False
        user = self._want[0]
        try:
            iam.verify_otp(self.ctx, user, str(responses[0]).strip())
        except Exception as exc:  # noqa: BLE001 - Unauthenticated: wrong or replayed code
            self._failed()
            self.ctx.gate.record(Principal(user, (), self.source, "bastion"), "bastion.login", decision="deny", outcome="refused",
                                 details={"error": getattr(exc, "message", str(exc)), "factor": "totp"})  # fmt: skip
            return False
        person = iam.get_user(self.ctx, user) or {}
        self.login = Login(user, tuple(person.get("roles") or ()), self.source, self._want[2], self._want[1])
        self.gw.conns[self.conn] = self
        self.ctx.gate.record(self.login.principal, "bastion.login", target=self._want[2] or "", details={"factor": "key+totp"})
        return True

    def _failed(self) -> None:
        from control_plane.gate import iam

        user = self._want[0] if self._want else "?"
        iam.record_failure(self.ctx, f"bastion:user:{user}", f"bastion:ip:{self.source}")


@dataclass
class Live:
    """A session the gateway holds."""

    id: str
    login: Login
    asset: store.Asset
    account: str
    kind: str
    recorder: Recorder
    close: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    last_input: float = field(default_factory=time.monotonic)
    commands: int = 0


class Gateway:
    """The bastion's SSH server, its live sessions and their timers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.settings.bastion
        self.conns: dict[Any, _Server] = {}
        self.live: dict[str, Live] = {}
        self._handshakes: dict[str, asyncio.Semaphore] = {}
        self.name = f"{self.cfg.host}:{self.cfg.port}"
        self._server: asyncssh.SSHAcceptor | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.kek = recordings_key(ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()

    @property
    def recordings(self) -> Path:
        """Where sealed recordings go."""
        return self.ctx.settings.path(self.cfg.recordings) if self.cfg.recordings else self.ctx.settings.var / "bastion" / "recordings"

    def _host_key(self) -> asyncssh.SSHKey:
        path = self.ctx.settings.path(self.cfg.host_key) if self.cfg.host_key else self.ctx.settings.key_dir / "bastion" / "ssh_host_ed25519_key"
        if not path.exists():
            import os

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = asyncssh.generate_private_key("ssh-ed25519", comment="govctl-bastion")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key())
        return asyncssh.read_private_key(str(path))

    def recover(self) -> list[str]:
        """Sessions this gateway held when it died: their end is recorded as abnormal, with what their recording proves."""
        from control_plane.bastion.recording import verify
        from control_plane.crypto import IntegrityError

        ended = []
        for s in store.list_sessions(self.ctx, live_only=True, limit=10000):
            if s["gateway"] != self.name or s["id"] in self.live:
                continue
            try:
                v = verify(Path(s["recording"]), self.kek)
                final, chunks, note = v.final_sm3, v.chunks, {"trailing_bytes": v.trailing_bytes}
            except (OSError, IntegrityError, ValueError) as exc:
                final, chunks, note = None, 0, {"error": str(exc)}
            store.end_session(self.ctx, s["id"], "abnormal: gateway stopped", final_sm3=final, chunks=chunks, commands=s["commands"])
            self.ctx.gate.record(Principal(s["user"], (), s["source"], "bastion"), "bastion.session.end", target=f"{s['host']}:{s['account']}",
                                 outcome="failed", details={"session": s["id"], "reason": "abnormal", "final_sm3": final, "chunks": chunks, **note})  # fmt: skip
            ended.append(s["id"])
        return ended

    async def start(self) -> None:
        """Listen (and recover sessions a crash left open)."""
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.recover)
        self._server = await asyncssh.create_server(
            lambda: _Server(self), self.cfg.host, self.cfg.port, server_host_keys=[self._host_key()],
            process_factory=self._process, sftp_factory=self._sftp, line_editor=False, encoding=None, allow_scp=False,
            agent_forwarding=False, x11_forwarding=False, password_auth=False, kbdint_auth=True, public_key_auth=True,
            login_timeout=60, keepalive_interval=30, server_version="govctl-bastion",
        )  # fmt: skip
        self._ticker = asyncio.create_task(self._tick())
        self.ready.set()

    async def stop(self) -> None:
        """End every session (recorded as ended by shutdown) and stop listening."""
        for live in list(self.live.values()):
            live.close("gateway shutdown")
        if self._ticker:
            self._ticker.cancel()
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _tick(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(0.2)
            n += 1
            for live in list(self.live.values()):
                live.recorder.tick()
                now = time.monotonic()
                if now - live.last_input > self.cfg.idle_timeout_s:
                    live.close("idle timeout")
                elif now - live.started > self.cfg.max_session_s:
                    live.close("maximum session length")
            if n % 2 == 0 and self.live:  # kills and locks from other processes, within a second
                try:
                    ends = await asyncio.to_thread(store.to_end, self.ctx, list(self.live))
                except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop the timers
                    log.warning("bastion: checking kills and locks failed: %s", exc)
                    continue
                for sid, why in ends.items():
                    if sid in self.live:
                        self.live[sid].close(why)

    # -- sessions -----------------------------------------------------------------------------------

    def _login_of(self, chan: Any) -> _Server:
        srv = self.conns.get(chan.get_connection())
        if srv is None or srv.login is None:
            raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "not authenticated")
        return srv

    async def _target(self, srv: _Server, process: asyncssh.SSHServerProcess[bytes] | None) -> tuple[store.Asset, str]:
        """The host and account: from the login name, or picked from a menu on a terminal."""
        login = srv.login
        assert login is not None
        ctx = self.ctx
        if login.host is None:
            if process is None or process.get_terminal_type() is None:
                raise store.BastionError("没有指定主机 / no host given: log in as USER%HOST for commands and file transfer")
            reach = await asyncio.to_thread(store.reachable, ctx, login.user)
            if not reach:
                raise store.BastionError("您没有任何主机的访问授权 / you have no grant for any host; ask for one (govctl bastion grant)")
            lines = ["\r\n可访问的主机 / hosts you may open:\r\n"]
            for i, (a, accts) in enumerate(reach, 1):
                lines.append(f"  {i:>2}) {a.name:<16} {a.address:<15} {a.pool}/{a.zone}  账号 accounts: {', '.join(accts)}\r\n")
            process.stdout.write(_say("".join(lines) + "请输入序号或主机名 / number or host name: "))
            choice = (await _read_line(process)).strip()
            pick = next((r for i, r in enumerate(reach, 1) if choice in (str(i), r[0].name)), None)
            if pick is None:
                raise store.BastionError(f"没有这个选项 / no such host: {choice!r}")
            a, accts = pick
            return a, login.account if login.account in accts else accts[0]
        a = await asyncio.to_thread(store.asset, ctx, login.host)
        accts = await asyncio.to_thread(store.granted, ctx, login.user, a, login.account)
        if not accts:
            raise store.BastionError(f"没有访问 {login.account + '@' if login.account else ''}{a.name} 的授权 / no grant for "
                                     f"{login.account or 'any account'} on {a.name}")  # fmt: skip
        return a, accts[0]

    async def _upstream(self, a: store.Asset, account: str) -> asyncssh.SSHClientConnection:
        from control_plane.deploy import hostkeys

        known = asyncssh.import_known_hosts(f"{a.address} {a.host_key}\n") if a.host_key else None
        key = await asyncio.to_thread(hostkeys.private_key, self.ctx, a.name)
        # Every session to a host comes from this one address: sshd's MaxStartups (10:30:100 by default) drops
        # unauthenticated connections beyond ten at random, so at most UPSTREAM_HANDSHAKES are in flight per host,
        # and a handshake reset by the host is tried again.
        gate = self._handshakes.setdefault(a.address, asyncio.Semaphore(UPSTREAM_HANDSHAKES))
        for attempt in range(3):
            async with gate:
                try:
                    return await asyncssh.connect(a.address, username=account, client_keys=[key], known_hosts=known, connect_timeout=10,
                                                  agent_path=None, preferred_auth="publickey")  # fmt: skip
                except (ConnectionResetError, BrokenPipeError, asyncssh.ConnectionLost) as exc:
                    if attempt == 2:
                        raise
                    log.info("upstream %s reset the handshake (%s); trying again", a.name, exc)
            await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _begin(self, srv: _Server, a: store.Asset, account: str, kind: str, width: int, height: int, term: str, close: Callable[[str], None]) -> Live:
        login = srv.login
        assert login is not None
        concurrent = len([s for s in self.live.values() if s.login.user == login.user])
        if concurrent >= self.cfg.acl.max_sessions:
            raise store.BastionError(f"同时在线会话已达上限 {self.cfg.acl.max_sessions} / at most {self.cfg.acl.max_sessions} sessions at once")
        sid = f"s-{clock.now():%Y%m%d}-{secrets.token_hex(5)}"
        path = self.recordings / f"{sid}.gcast"
        rec = Recorder(path, sid, self.kek, self.ctx.signer, width=width or 80, height=height or 24, chunk_s=self.cfg.chunk_s,
                       meta={"term": term or "xterm", "title": f"{login.user} → {account}@{a.name}"})  # fmt: skip
        store.start_session(self.ctx, sid, user=login.user, host=a.name, account=account, kind=kind, source=login.source, recording=str(path), gateway=self.name)
        self.ctx.gate.record(login.principal, "bastion.session.start", target=f"{a.name}:{account}", details={"session": sid, "kind": kind})
        live = Live(sid, login, a, account, kind, rec, close)
        self.live[sid] = live
        return live

    def _end(self, live: Live, reason: str) -> None:
        if self.live.pop(live.id, None) is None:
            return
        out = live.recorder.close(reason, clock.now_iso())
        store.end_session(self.ctx, live.id, reason, final_sm3=out["final_sm3"], chunks=out["chunks"], commands=live.commands)
        self.ctx.gate.record(live.login.principal, "bastion.session.end", target=f"{live.asset.name}:{live.account}",
                             outcome="succeeded" if reason in ("normal", "closed by client") else "failed",
                             details={"session": live.id, "reason": reason, **out, "commands": live.commands})  # fmt: skip

    def _log_command(self, live: Live, command: str, verdict: Verdict, kind: str, op_id: str = "") -> None:
        """The command log: one ledger record per judged line (mirrored to the SOC as a govctl.bastion event), an alert where due."""
        live.commands += 1
        live.recorder.marker(f"{verdict.action}: {command[:200]}")
        decision = {"allow": "allow", "alert": "allow", "require_approval": "require_approval", "block": "deny"}[verdict.action]
        self.ctx.gate.record(live.login.principal, "bastion.command", target=f"{live.asset.name}:{live.account}",
                             params={"command": command, "session": live.id, "kind": kind}, decision=decision,
                             outcome="refused" if verdict.action == "block" else "accepted",
                             details={"session": live.id, "command": command[:8192], "kind": kind, "verdict": verdict.as_dict(),
                                      "host": live.asset.name, "account": live.account, "zone": live.asset.zone, "pool": live.asset.pool,
                                      **({"op": op_id} if op_id else {})})  # fmt: skip
        if verdict.action in ("block", "alert") and self.ctx.gate.alerts is not None:
            from control_plane.gate.decision import AlertRef

            sev = "high" if verdict.action == "block" else "medium"
            rule = verdict.rules[0] if verdict.rules else "govctl.bastion"
            ref = AlertRef(id=f"bastion-{live.id}-{live.commands}", rule=rule, title=f"堡垒机{'阻断' if verdict.action == 'block' else '告警'}: {command[:80]}",
                           severity=sev, summary="; ".join(verdict.reasons)[:1000], at=clock.now_iso(),  # type: ignore[arg-type]
                           operation={"operation": "bastion.command", "target": f"{live.asset.name}:{live.account}", "requester": live.login.user,
                                      "params": {"command": command, "session": live.id}})  # fmt: skip
            try:
                self.ctx.gate.alerts.raise_alert(ref)
            except Exception as exc:  # noqa: BLE001 - the ledger has it; the SOC stream raises it again from the mirrored event
                log.warning("bastion: alert for %s not indexed: %s", live.id, exc)

    def _judge(self, live: Live, command: str, kind: str) -> Verdict:
        return judge(self.ctx, user=live.login.user, roles=live.login.roles, source=live.login.source, host=live.asset.name,
                     account=live.account, zone=self.cfg.zone(live.asset.zone), command=command, session=live.id, kind=kind)  # fmt: skip

    async def _request(self, live: Live, command: str, kind: str, verdict: Verdict) -> Any:
        """An approval request bound to (session, host, account, command), submitted as the person: the gate's view of it."""
        from control_plane.gate import OperationRequest

        req = OperationRequest("bastion.command", f"{live.asset.name}:{live.account}", {"command": command, "session": live.id, "kind": kind},
                               reason=f"bastion session {live.id}: " + "; ".join(verdict.reasons)[:1500])  # fmt: skip
        return await asyncio.to_thread(self.ctx.gate.submit, live.login.principal, req)

    async def _wait(self, live: Live, op_id: str, cancelled: asyncio.Event | None = None) -> bool:
        """Wait for the approvers; on approval run the request (single use) and say yes; on rejection, expiry, Ctrl-C or timeout say no."""
        p = live.login.principal
        deadline = time.monotonic() + self.cfg.approval_timeout_s
        while time.monotonic() < deadline and live.id in self.live:
            if cancelled is not None and cancelled.is_set():
                await asyncio.to_thread(self.ctx.gate.cancel, p, op_id)
                return False
            cur = await asyncio.to_thread(self.ctx.gate.get, op_id)
            if cur.status == "approved":
                done = await asyncio.to_thread(self.ctx.gate.run, p, op_id)
                return done.status == "succeeded"
            if cur.status in ("rejected", "cancelled", "expired", "failed", "succeeded"):
                return False
            await asyncio.sleep(0.3)
        try:
            await asyncio.to_thread(self.ctx.gate.cancel, p, op_id)
        except Exception:  # noqa: BLE001 - decided meanwhile
            pass
        return False

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        try:
            srv = self._login_of(process.channel)
            a, account = await self._target(srv, process)
        except store.BastionError as exc:
            process.stderr.write(_say(f"[堡垒机] {exc.message}\r\n"))
            process.exit(1)
            return
        try:
            up = await self._upstream(a, account)
        except (OSError, asyncssh.Error) as exc:
            process.stderr.write(_say(f"[堡垒机] 无法连接 {a.name} / cannot reach {a.name}: {exc}\r\n"))
            process.exit(1)
            return
        try:
            if process.command is not None:
                await _ExecSession(self, srv, process, up, a, account).run()
            elif process.get_terminal_type() is None:
                process.stderr.write(_say("[堡垒机] 交互会话需要终端，请使用 ssh -t / an interactive session needs a terminal (ssh -t)\r\n"))
                process.exit(1)
            else:
                await _ShellSession(self, srv, process, up, a, account).run()
        except store.BastionError as exc:
            process.stderr.write(_say(f"[堡垒机] {exc.message}\r\n"))
            process.exit(1)
        finally:
            up.close()

    def _sftp(self, chan: Any) -> asyncssh.SFTPServer:
        return _SftpProxy(self, chan)

    # -- running in a thread of `govctl up` ---------------------------------------------------------

    def serve_in_thread(self) -> threading.Thread:
        """Run the gateway on its own event loop in a daemon thread; returns once it listens."""
        failed: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                failed.append(exc)
                self.ready.set()
                return
            loop.run_forever()

        t = threading.Thread(target=main, name="bastion", daemon=True)
        t.start()
        self.ready.wait(60)
        if failed:
            raise failed[0]
        return t

    def shutdown(self) -> None:
        """Stop a gateway started with serve_in_thread."""
        if self.loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self.stop(), self.loop)
        try:
            fut.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


async def _read_line(process: asyncssh.SSHServerProcess[bytes], limit: int = 64) -> str:
    """A short line typed at the menu, echoed, with backspace."""
    buf = bytearray()
    while True:
        try:
            data = await process.stdin.read(64)
        except asyncssh.TerminalSizeChanged:
            continue
        if not data:
            raise store.BastionError("连接已关闭 / closed")
        for b in data:
            if b in (13, 10):
                process.stdout.write(b"\r\n")
                return buf.decode(errors="replace")
            if b in (3, 4):
                raise store.BastionError("已取消 / cancelled")
            if b in (8, 127):
                if buf:
                    buf.pop()
                    process.stdout.write(b"\b \b")
            elif 32 <= b < 127 and len(buf) < limit:
                buf.append(b)
                process.stdout.write(bytes([b]))


class _ShellSession:
    """An interactive shell: keystrokes pass through, Enter is judged."""

    def __init__(self, gw: Gateway, srv: _Server, process: asyncssh.SSHServerProcess[bytes], up: asyncssh.SSHClientConnection,
                 a: store.Asset, account: str) -> None:  # fmt: skip
        self.gw, self.srv, self.process, self.conn, self.asset, self.account = gw, srv, process, up, a, account
        self.secret = shellint.new_secret()
        self.inputs = shellint.InputFilter()
        self.scrub = shellint.OutputScrubber()
        self.held = bytearray()
        self.state = "typing"  # typing | entered | probing | deciding | waiting (for an approval)
        self.nonce = ""
        self.entered_at = 0.0
        self.cancel = asyncio.Event()
        self.done = asyncio.Event()
        self.reason = "normal"

    def _tell(self, text: str) -> None:
        """The bastion's own words to the person: on their terminal and in the recording (a replay shows what they read)."""
        data = _say(text)
        live = getattr(self, "live", None)
        if live is not None:
            live.recorder.output(data)
        self.process.stdout.write(data)

    def _close(self, why: str) -> None:
        if not self.done.is_set():
            self.reason = why
            msg = {"killed": "会话已被管理员终止 / the session was ended by an administrator",
                   "locked": "账号已被锁定，会话结束 / your account was locked: the session ends",
                   "idle timeout": f"空闲超过 {self.gw.cfg.idle_timeout_s} 秒，会话已结束 / idle for {self.gw.cfg.idle_timeout_s} s: the session ended",
                   "maximum session length": f"会话已达最长时长 {self.gw.cfg.max_session_s} 秒 / the session reached its maximum length "
                                             f"({self.gw.cfg.max_session_s} s)",
                   "gateway shutdown": "堡垒机停止服务，会话结束 / the bastion is shutting down: the session ends"}.get(why, f"会话结束：{why} / session ended: {why}")
            try:
                self._tell(f"\r\n\x1b[1;31m[堡垒机] {msg}\x1b[0m\r\n")
            except Exception:  # noqa: BLE001 - the client may be gone already
                pass
            self.done.set()

    async def run(self) -> None:
        w, h, _, _ = self.process.get_terminal_size()
        term = self.process.get_terminal_type() or "xterm"
        self.up = await self.conn.create_process(shellint.shell_command(self.secret), term_type=term, term_size=(w, h), encoding=None)
        self.live = self.gw._begin(self.srv, self.asset, self.account, "shell", w, h, term, self._close)
        self._tell(f"\x1b[36m[堡垒机] {self.account}@{self.asset.name}（{self.asset.pool}/{self.asset.zone}）会话 {self.live.id}："
                   f"全程录像，命令执行前经安全策略审查。\r\n[bastion] session {self.live.id}: recorded; every command is checked before it runs.\x1b[0m\r\n")  # fmt: skip
        tasks = [asyncio.create_task(self._from_host()), asyncio.create_task(self._from_person()), asyncio.create_task(self.done.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            status = self.up.exit_status if self.up.exit_status is not None else 0
            self.up.close()
            self.gw._end(self.live, self.reason)
            try:
                self.process.exit(status if self.reason == "normal" else 255)
            except Exception:  # noqa: BLE001 - the client may be gone already
                pass

    async def _from_host(self) -> None:
        while True:
            data = await self.up.stdout.read(65536)
            if not data:
                self.reason = "normal"
                return
            clean, marks = self.scrub.feed(data)
            if clean:
                self.live.recorder.output(clean)
                self.process.stdout.write(clean)
            for kind, nonce, line in marks:
                # an Enter readline took (however late): ask for the line. A forged marker only sends a probe to whatever reads the terminal
                if kind == "E" and self.state in ("entered", "typing"):
                    self.state = "probing"
                    self.nonce = shellint.new_nonce()
                    self.up.stdin.write(shellint.PROBE_KEY + self.nonce.encode())
                elif kind == "L" and self.state == "probing" and nonce == self.nonce:
                    self.state = "deciding"
                    asyncio.create_task(self._decide(line))

    async def _from_person(self) -> None:
        while True:
            try:
                data = await self.process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as exc:
                self.up.change_terminal_size(exc.width, exc.height)
                self.live.recorder.resize(exc.width, exc.height)
                continue
            except asyncssh.BreakReceived:
                continue
            if not data:
                self.reason = "closed by client"
                return
            self.live.last_input = time.monotonic()
            self.live.recorder.input(data)
            data = self.inputs.feed(data)
            if self.state == "waiting":  # a paused line: only Ctrl-C (withdraw) means anything; nothing reaches the host
                if b"\x03" in data:
                    self.cancel.set()
                else:
                    self.process.stdout.write(b"\x07")
                continue
            if self.state == "deciding":
                self.held += data  # typed ahead: goes on once the line is settled
                continue
            self._forward(data)

    def _forward(self, data: bytes) -> None:
        """Pass keystrokes through up to and including the first Enter; hold the rest until that Enter is settled."""
        if self.state in ("entered", "probing"):
            if self.state == "entered" and time.monotonic() - self.entered_at > 1.0:
                self.state = "typing"  # no prompt took that Enter: a program did (cat, read, an editor)
            else:
                self.held += data
                return
        data = bytes(self.held) + data
        self.held.clear()
        for i, b in enumerate(data):
            if b in (13, 10):
                self.up.stdin.write(data[:i + 1])
                self.held += data[i + 1:]
                self.state = "entered"
                self.entered_at = time.monotonic()
                asyncio.get_running_loop().call_later(1.05, self._release_if_unclaimed, self.entered_at)
                return
        if data:
            self.up.stdin.write(data)

    def _release_if_unclaimed(self, at: float) -> None:
        if self.state == "entered" and self.entered_at == at:
            self.state = "typing"
            if self.held:
                held = bytes(self.held)
                self.held.clear()
                self._forward(held)

    async def _decide(self, line: str) -> None:
        try:
            if await asyncio.to_thread(incomplete, line):
                self.up.stdin.write(shellint.NEWLINE_IN_BUFFER)  # the next Enter's answer holds the whole text
                return
            if not line.strip():
                self.up.stdin.write(shellint.accept(self.secret))
                return
            verdict = await asyncio.to_thread(self.gw._judge, self.live, line, "shell")
            if verdict.action == "require_approval":
                self.cancel.clear()
                try:
                    view = await self.gw._request(self.live, line, "shell", verdict)
                except Exception as exc:  # noqa: BLE001 - the gate refused the request itself (blocked there, or not allowed): nothing runs
                    refused = Verdict("block", verdict.rules, (*verdict.reasons, f"the approval request was refused: {getattr(exc, 'message', exc)}"))
                    await asyncio.to_thread(self.gw._log_command, self.live, line, refused, "shell")
                    self._tell(refused.message(line))
                    self.up.stdin.write(shellint.DISCARD)
                    self.held.clear()
                    return
                await asyncio.to_thread(self.gw._log_command, self.live, line, verdict, "shell", view.id)
                self._tell(verdict.message(line, op_id=view.id))
                self.state = "waiting"
                self.held.clear()  # what was typed after a line that needs approval is not kept for after it
                ok = view.status == "succeeded" or await self.gw._wait(self.live, view.id, self.cancel)
                if ok:
                    self._tell(f"\x1b[32m[堡垒机] 已批准（{view.id}），执行中 / approved, running\x1b[0m\r\n")
                    self.up.stdin.write(shellint.accept(self.secret))
                else:
                    self._tell(f"\x1b[31m[堡垒机] 未获批准（{view.id}），命令已丢弃 / not approved: the command was discarded\x1b[0m\r\n")
                    self.up.stdin.write(shellint.DISCARD)
                    self.held.clear()
                return
            await asyncio.to_thread(self.gw._log_command, self.live, line, verdict, "shell")
            if verdict.action == "block":
                self._tell(verdict.message(line))
                self.up.stdin.write(shellint.DISCARD)
                self.held.clear()  # the rest of a paste that held a blocked line is dropped with it
                return
            if verdict.action == "alert":
                self._tell(verdict.message(line))
            self.up.stdin.write(shellint.accept(self.secret))
        except Exception as exc:  # noqa: BLE001 - a failed decision never lets the line run
            log.exception("bastion: deciding a line failed")
            self._tell(f"\r\n\x1b[31m[堡垒机] 无法完成命令审查，命令未执行 / the command could not be checked and was not run: {exc}\x1b[0m\r\n")
            self.up.stdin.write(shellint.DISCARD)
        finally:
            self.state = "typing"
            if self.held:
                held = bytes(self.held)
                self.held.clear()
                self._forward(held)


class _ExecSession:
    """``ssh bastion 'command'``: the whole command is judged, then run with its output relayed and recorded."""

    def __init__(self, gw: Gateway, srv: _Server, process: asyncssh.SSHServerProcess[bytes], up: asyncssh.SSHClientConnection,
                 a: store.Asset, account: str) -> None:  # fmt: skip
        self.gw, self.srv, self.process, self.conn, self.asset, self.account = gw, srv, process, up, a, account
        self.done = asyncio.Event()
        self.reason = "normal"

    def _close(self, why: str) -> None:
        self.reason = why
        self.done.set()

    async def run(self) -> None:
        command = str(self.process.command)
        term = self.process.get_terminal_type()
        w, h, _, _ = self.process.get_terminal_size()
        live = self.gw._begin(self.srv, self.asset, self.account, "exec", w, h, term or "", self._close)
        status = 255
        try:
            verdict = await asyncio.to_thread(self.gw._judge, live, command, "exec")
            if verdict.action == "block":
                await asyncio.to_thread(self.gw._log_command, live, command, verdict, "exec")
                self.process.stderr.write(_say(verdict.message(command)))
                status = 126
                return
            if verdict.action == "require_approval":
                view = await self.gw._request(live, command, "exec", verdict)
                await asyncio.to_thread(self.gw._log_command, live, command, verdict, "exec", view.id)
                self.process.stderr.write(_say(verdict.message(command, op_id=view.id).replace("按 Ctrl-C 撤回。", "").replace(" Ctrl-C withdraws it.", "")))
                if view.status != "succeeded" and not await self.gw._wait(live, view.id):
                    self.process.stderr.write(_say(f"[堡垒机] 未获批准（{view.id}），命令未执行 / not approved: the command did not run\r\n"))
                    status = 126
                    return
            else:
                await asyncio.to_thread(self.gw._log_command, live, command, verdict, "exec")
                if verdict.action == "alert":
                    self.process.stderr.write(_say(verdict.message(command)))
            up = await self.conn.create_process(command, term_type=term, term_size=(w, h) if term else None, encoding=None)
            status = await self._relay(live, up)
        finally:
            self.gw._end(live, self.reason)
            self.process.exit(status)

    async def _relay(self, live: Live, up: asyncssh.SSHClientProcess[bytes]) -> int:
        async def down(src: Any, dst: Any) -> None:
            while True:
                data = await src.read(65536)
                if not data:
                    return
                live.recorder.output(data)
                dst.write(data)

        async def upward() -> None:
            while True:
                try:
                    data = await self.process.stdin.read(65536)
                except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                    continue
                if not data:
                    up.stdin.write_eof()
                    return
                live.last_input = time.monotonic()
                live.recorder.input(data)
                up.stdin.write(data)

        outs = [asyncio.create_task(down(up.stdout, self.process.stdout)), asyncio.create_task(down(up.stderr, self.process.stderr))]
        ins = asyncio.create_task(upward())
        stop = asyncio.create_task(self.done.wait())
        await asyncio.wait([asyncio.gather(*outs), stop], return_when=asyncio.FIRST_COMPLETED)
        ins.cancel()
        stop.cancel()
        if self.done.is_set():
            up.close()
            return 255
        await up.wait_closed()
        return up.exit_status if up.exit_status is not None else 255


class _SftpProxy(asyncssh.SFTPServer):
    """SFTP (and scp, which speaks SFTP) to the granted host: reads pass, writes are judged as the shell commands they amount to."""

    def __init__(self, gw: Gateway, chan: Any) -> None:
        super().__init__(chan)
        self.gw = gw
        self.srv = gw._login_of(chan)
        self.client: asyncssh.SFTPClient | None = None
        self.conn: asyncssh.SSHClientConnection | None = None
        self.live: Live | None = None
        self._lock = asyncio.Lock()

    async def _c(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self.client is None:
                try:
                    a, account = await self.gw._target(self.srv, None)
                except store.BastionError as exc:
                    raise asyncssh.SFTPPermissionDenied(exc.message) from None
                self.conn = await self.gw._upstream(a, account)
                self.client = await self.conn.start_sftp_client()
                self.live = self.gw._begin(self.srv, a, account, "sftp", 0, 0, "", self._close)
            return self.client

    def _close(self, why: str) -> None:
        if self.conn is not None:
            self.conn.close()
        self.channel.close()

    async def _check(self, command: str, path: bytes) -> None:
        """Judge a changing operation; a refusal is a permission error that says why (and, for approval, the request id)."""
        await self._c()
        live = self.live
        assert live is not None
        p = path.decode(errors="replace")
        verdict = await asyncio.to_thread(self.gw._judge, live, command, "sftp")
        if any(p == s.rstrip("/") or p.startswith(s) for s in SENSITIVE) and verdict.action in ("allow", "alert"):
            verdict = Verdict("require_approval", (*verdict.rules, "govctl.bastion.sensitive_path"),
                              (*verdict.reasons, f"{p} is a sensitive path: changes need an approval; 敏感路径需审批"))  # fmt: skip
        if verdict.action == "require_approval":
            used = await asyncio.to_thread(_consume_approved, self.gw, live, command)
            if used:
                await asyncio.to_thread(self.gw._log_command, live, command, Verdict("allow", verdict.rules, (f"approved by {used}",)), "sftp", used)
                return
            view = await self.gw._request(live, command, "sftp", verdict)
            await asyncio.to_thread(self.gw._log_command, live, command, verdict, "sftp", view.id)
            if view.status == "succeeded":
                return
            msg = f"[堡垒机] 需要审批 {view.id}，批准后重试 / approval {view.id} needed: retry after it is approved"
            self._tell(msg)
            raise asyncssh.SFTPPermissionDenied(msg)
        await asyncio.to_thread(self.gw._log_command, live, command, verdict, "sftp")
        if verdict.action == "block":
            msg = f"[堡垒机] 已阻断 / blocked: {'; '.join(verdict.reasons)[:200]}"
            self._tell(msg)
            raise asyncssh.SFTPPermissionDenied(msg)

    def _tell(self, msg: str) -> None:
        """Say why on the channel's stderr: OpenSSH's sftp and scp print the status code only, ssh prints this."""
        try:
            self.channel.write_stderr((msg + "\r\n").encode())
        except Exception:  # noqa: BLE001 - the status reply still carries it
            pass

    # reads
    async def realpath(self, path: bytes) -> bytes:
        return await (await self._c()).realpath(path)

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await (await self._c()).stat(path)

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await (await self._c()).lstat(path)

    async def scandir(self, path: bytes) -> Any:
        async for name in (await self._c()).scandir(path):
            yield name

    async def readlink(self, path: bytes) -> bytes:
        return await (await self._c()).readlink(path)

    async def statvfs(self, path: bytes) -> Any:
        return await (await self._c()).statvfs(path)

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Any:
        c = await self._c()
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC):
            await self._check(f"cat > {_q(path)}", path)
        f = await c.open(path, pflags, attrs, encoding=None)  # bytes through, never decoded
        self.live.recorder.marker(f"sftp open {path.decode(errors='replace')} flags={pflags}") if self.live else None
        return f

    async def read(self, file_obj: Any, offset: int, size: int) -> bytes:
        return await file_obj.read(size, offset)

    async def write(self, file_obj: Any, offset: int, data: bytes) -> int:
        await file_obj.write(data, offset)
        return len(data)

    async def close(self, file_obj: Any) -> None:
        await file_obj.close()

    async def fstat(self, file_obj: Any) -> asyncssh.SFTPAttrs:
        return await file_obj.stat()

    # changes
    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        if attrs.permissions is not None:
            await self._check(f"chmod {attrs.permissions & 0o7777:o} {_q(path)}", path)
        if attrs.uid is not None or attrs.gid is not None:
            await self._check(f"chown {attrs.uid}:{attrs.gid} {_q(path)}", path)
        await (await self._c()).setstat(path, attrs)

    async def fsetstat(self, file_obj: Any, attrs: asyncssh.SFTPAttrs) -> None:
        await file_obj.setstat(attrs)

    async def remove(self, path: bytes) -> None:
        await self._check(f"rm -f {_q(path)}", path)
        await (await self._c()).remove(path)

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self._check(f"mkdir {_q(path)}", path)
        await (await self._c()).mkdir(path, attrs)

    async def rmdir(self, path: bytes) -> None:
        await self._check(f"rmdir {_q(path)}", path)
        await (await self._c()).rmdir(path)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._check(f"mv {_q(oldpath)} {_q(newpath)}", newpath)
        await self._check(f"mv {_q(oldpath)} {_q(newpath)}", oldpath)
        await (await self._c()).rename(oldpath, newpath)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._check(f"mv {_q(oldpath)} {_q(newpath)}", newpath)
        await (await self._c()).posix_rename(oldpath, newpath)

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        await self._check(f"ln -s {_q(oldpath)} {_q(newpath)}", newpath)
        await (await self._c()).symlink(oldpath, newpath)

    def exit(self) -> None:
        if self.live is not None:
            self.gw._end(self.live, "normal")
        if self.conn is not None:
            self.conn.close()
        try:  # as sshd does when sftp-server ends: scp counts a missing exit status as a failure
            self.channel.exit(0)
        except OSError:
            pass


def _q(path: bytes) -> str:
    import shlex

    return shlex.quote(path.decode(errors="replace"))


def _consume_approved(gw: Gateway, live: Live, command: str) -> str:
    """An approved, unused request of this person for exactly this command on this host and account: run it (single use) and return its id."""
    from sqlalchemy import select

    from control_plane.gate.models import operations

    target = f"{live.asset.name}:{live.account}"
    with gw.ctx.engine.connect() as conn:
        rows = conn.execute(select(operations.c.id, operations.c.params).where(
            operations.c.operation == "bastion.command", operations.c.status == "approved", operations.c.target == target,
            operations.c.requester == live.login.user)).all()  # fmt: skip
    for op_id, params in rows:
        p = json.loads(params)
        if p.get("command") == command and p.get("kind") == "sftp":
            try:
                return gw.ctx.gate.run(live.login.principal, op_id).id
            except Exception:  # noqa: BLE001 - expired or already used: look on
                continue
    return ""
