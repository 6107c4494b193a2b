"""The bastion's cost to the person at the keyboard, measured against direct SSH to the same host.

A two-host local stack is deployed (network-namespace hosts with their own sshd, as in
``tests/bastion``) and the product's gateway runs in a process of its own. In the same run:

- keystroke echo: one character written into a login shell until its echo comes back, through
  the bastion and directly (the gateway's own per-host key, from this machine, which the host's
  security group admits); the figure is the added p99;
- the decision on Enter (``bastion.decide.judge``, 100 % of the path a typed line takes before
  it may reach the host): in process (the correlation context switched off) against parsing the
  same line with bashlex alone, and with the correlation context from the real Elasticsearch;
- bulk output: ``cat`` of a 200 MB file as an exec request, bytes/s through the bastion (every
  byte recorded in sealed chunks) against direct;
- 50 people at once in recorded shells, each printing a line twice a second for 10 s: the
  gateway process's CPU and resident memory per session.

Elasticsearch is started on the test ports if it is not running (and stopped again); the stack
is destroyed at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402
import bashlex  # noqa: E402

from control_plane.config import load  # noqa: E402
from control_plane.deploy import hostkeys  # noqa: E402
from control_plane.deploy import service as deploy  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.soc.inline import analyze_cached  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402
from tests.bastion.conftest import STACK, Env, Person, _deploy, free_port  # noqa: E402
from tests.conftest import make_test_config, write_config  # noqa: E402
from tests.gate.conftest import make_people  # noqa: E402

KEYS = int(os.environ.get("BENCH_BASTION_KEYS", "400"))
DECISIONS = int(os.environ.get("BENCH_BASTION_DECISIONS", "3000"))
BULK_MB = int(os.environ.get("BENCH_BASTION_BULK_MB", "200"))
SESSIONS = int(os.environ.get("BENCH_BASTION_SESSIONS", "50"))
LINES = ["ls -la /var/log | grep auth; df -h", "systemctl status nginx --no-pager", "cd /srv/app && git log --oneline | head -5",
         "tail -n 100 /var/log/syslog | grep -i error", "ps aux --sort=-%mem | head", "rm -rf /srv/old-release-2019",
         "for f in *.log; do gzip \"$f\"; done", "curl -s http://10.1.1.5/health | python3 -m json.tool"]  # fmt: skip
PROMPT = (b"# ", b"$ ")


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


class _Totp(asyncssh.SSHClient):
    def __init__(self, code: str) -> None:
        self.code = code

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(self, name: str, instructions: str, lang: str, prompts: list[tuple[str, bool]]) -> list[str]:
        return [self.code for _ in prompts]


async def via_bastion(env: Env, p: Person, host: str = "prim-app-1") -> asyncssh.SSHClientConnection:
    code = await asyncio.to_thread(p.code, env.ctx)
    conn, _ = await asyncssh.create_connection(lambda: _Totp(code), "127.0.0.1", env.port, username=f"{p.name}%{host}",
                                               client_keys=[str(p.key)], known_hosts=None,
                                               preferred_auth="publickey,keyboard-interactive")  # fmt: skip
    return conn


async def direct(env: Env, host: str = "prim-app-1") -> asyncssh.SSHClientConnection:
    key = hostkeys.private_key(env.ctx, host)
    return await asyncssh.connect(env.hosts[host], username="root", client_keys=[key], known_hosts=None)


async def _until(proc: asyncssh.SSHClientProcess, done: object, limit_s: float = 30) -> bytes:
    buf = b""
    end = time.monotonic() + limit_s
    while not done(buf):  # type: ignore[operator]
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no expected output after {limit_s} s; got {buf[-300:]!r}")
        buf += await asyncio.wait_for(proc.stdout.read(65536), left)
    return buf


async def _settled(proc: asyncssh.SSHClientProcess, quiet_s: float = 0.5) -> None:
    """Wait for a prompt, then until the shell has been quiet for ``quiet_s``."""
    await _until(proc, lambda b: b.rstrip(b" ").endswith((b"#", b"$")))
    while True:
        try:
            await asyncio.wait_for(proc.stdout.read(65536), quiet_s)
        except asyncio.TimeoutError:
            return


async def echo_latency(conn: asyncssh.SSHClientConnection, n: int) -> list[float]:
    """Milliseconds from writing one printable key to reading its echo, ``n`` times (the line cleared every 40 keys)."""
    proc = await conn.create_process(term_type="xterm", term_size=(160, 40), encoding=None)
    await _settled(proc)
    out: list[float] = []
    for i in range(n):
        ch = b"abcdefghij"[i % 10 : i % 10 + 1]
        t0 = time.perf_counter()
        proc.stdin.write(ch)
        await _until(proc, lambda b, c=ch: c in b)
        out.append((time.perf_counter() - t0) * 1000)
        if i % 40 == 39:
            proc.stdin.write(b"\x03")
            await _settled(proc, 0.2)
    proc.stdin.write(b"\x03exit\r")
    proc.close()
    return out


async def bulk(conn: asyncssh.SSHClientConnection, path: str) -> float:
    """Bytes/s of ``cat path`` as an exec request (no terminal)."""
    t0 = time.perf_counter()
    proc = await conn.create_process(f"cat {path}", encoding=None)
    n = 0
    while chunk := await proc.stdout.read(1 << 20):
        n += len(chunk)
    await proc.wait()
    dt = time.perf_counter() - t0
    assert n == BULK_MB * 1_000_000, f"read {n} bytes of {BULK_MB * 1_000_000}"
    return n / dt


def _cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def many(env: Env, people: list[Person], pid: int, go: Path) -> tuple[float, float, float]:
    """CPU (% of a core) and RSS (MiB) per session with every session printing, and the idle RSS before."""
    rss0 = _rss_mb(pid)
    conns = [await via_bastion(env, p) for p in people]
    procs = []
    for c in conns:
        proc = await c.create_process(term_type="xterm", term_size=(160, 40), encoding=None)
        await _settled(proc, 0.2)
        proc.stdin.write(f"while [ ! -e {go} ]; do sleep 0.2; done; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do date +%s.%N; sleep 0.5; done; echo bench-$((6*7))-done\r".encode())
        procs.append(proc)
    await asyncio.sleep(2)  # every line judged and running
    cpu0, t0 = _cpu_s(pid), time.monotonic()
    go.touch()
    # the marker is computed by the shell: the echo of the typed line never matches it
    await asyncio.gather(*(_until(p, lambda b: b"bench-42-done\r\n" in b, 120) for p in procs))
    cpu1, t1 = _cpu_s(pid), time.monotonic()
    rss = _rss_mb(pid)
    for p, c in zip(procs, conns):
        p.stdin.write(b"exit\r")
        c.close()
    n = len(people)
    return (cpu1 - cpu0) / (t1 - t0) / n * 100, (rss - rss0) / n, rss0


def decisions(env: Env) -> tuple[float, float, float, float]:
    """judge() p99 in process and with context; bashlex parse p99 of the same lines as the baseline."""
    from control_plane.bastion.decide import judge

    ctx = env.ctx
    zone = ctx.settings.bastion.zone("prod-a")
    engine = ctx.gate.soc
    context, engine.context = engine.context, None

    def one(i: int) -> float:
        analyze_cached.cache_clear()
        t0 = time.perf_counter()
        judge(ctx, user="bench", roles=("ops_engineer",), source="127.0.0.1", host="prim-app-1", account="root", zone=zone,
              command=LINES[i % len(LINES)], session="bench")  # fmt: skip
        return (time.perf_counter() - t0) * 1000

    for i in range(300):
        one(i)
    inproc = [one(i) for i in range(DECISIONS)]
    parse = []
    for i in range(DECISIONS):
        t0 = time.perf_counter()
        bashlex.parse(LINES[i % len(LINES)])
        parse.append((time.perf_counter() - t0) * 1000)
    engine.context = context
    for i in range(100):
        one(i)
    with_ctx = [one(i) for i in range(DECISIONS // 3)]
    return pct(inproc, 99), pct(parse, 99), pct(with_ctx, 99), statistics.median(inproc)


def main() -> None:
    """Deploy, measure, print; end with the RESULT line."""
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-bastion-"))
    port = free_port()
    data = make_test_config(var_dir=tmp / "var", bastion={"port": port, "chunk_s": 1.0})
    data["deploy"] = {"stacks": {"local": STACK}}
    cfg = write_config(tmp / "govctl.yaml", data)
    sup = Supervisor(load(cfg))
    started = [s.name for s in sup.status(["elasticsearch"]) if s.health != "healthy"]
    sup.up(["elasticsearch"])
    big = Path("/tmp/gb-bench-bulk")  # the local hosts share this machine's /tmp
    go = Path("/tmp/gb-bench-go")
    go.unlink(missing_ok=True)
    gw = None
    try:
        _deploy(cfg, "up")
        ctx = context_for(load(cfg))
        outs = deploy.outputs(ctx, "local")
        env = Env(ctx, make_people(ctx), port, {**outs["primary_hosts"], **outs["backup_hosts"]}, tmp)
        with big.open("wb") as f:
            block = os.urandom(1_000_000)
            for _ in range(BULK_MB):
                f.write(block)
        code = ("import sys, threading; from control_plane.config import load; from control_plane.wiring import context_for; "
                "from control_plane.bastion.gateway import Gateway; g = Gateway(context_for(load(sys.argv[1]))); g.serve_in_thread(); "
                "print('listening', flush=True); sys.stdin.read(); g.shutdown()")  # fmt: skip
        gw = subprocess.Popen([sys.executable, "-c", code, str(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert gw.stdout is not None and gw.stdout.readline().strip() == "listening", "the gateway did not start"
        lat = env.person("bench-lat", grant=["prim-app-1"])
        blk = env.person("bench-bulk", grant=["prim-app-1"])
        crowd = [env.person(f"bench-{i:02d}", grant=["prim-app-1"]) for i in range(SESSIONS)]
        d_in99, parse99, d_ctx99, d_in50 = decisions(env)

        async def run() -> tuple[list[float], list[float], float, float, tuple[float, float, float]]:
            b_conn, d_conn = await via_bastion(env, lat), await direct(env)
            via, dire = [], []
            for _ in range(2):  # alternate, so drift on a noisy machine hits both
                dire += await echo_latency(d_conn, KEYS // 2)
                via += await echo_latency(b_conn, KEYS // 2)
            b_conn.close()
            bb_conn = await via_bastion(env, blk)
            d_rate = max([await bulk(d_conn, str(big)) for _ in range(2)])
            b_rate = max([await bulk(bb_conn, str(big)) for _ in range(2)])
            bb_conn.close()
            d_conn.close()
            return via, dire, b_rate, d_rate, await many(env, crowd, gw.pid, go)

        via, dire, b_rate, d_rate, (cpu_pct, rss_mb, rss0) = asyncio.run(run())
    finally:
        if gw is not None:
            gw.communicate("", timeout=60)
        big.unlink(missing_ok=True)
        go.unlink(missing_ok=True)
        _deploy(cfg, "destroy")
        if started:
            sup.down(started)
    v99, d99 = pct(via, 99), pct(dire, 99)
    print(f"keystroke echo   via bastion p50 {statistics.median(via):.2f} ms p99 {v99:.2f} ms; direct p50 {statistics.median(dire):.2f} ms "
          f"p99 {d99:.2f} ms; added p99 {v99 - d99:.2f} ms  ({len(via)} keys each)")  # fmt: skip
    print(f"decision on Enter  in process p50 {d_in50:.3f} ms p99 {d_in99:.3f} ms (bashlex parse alone p99 {parse99:.3f} ms); "
          f"with correlation context p99 {d_ctx99:.3f} ms")  # fmt: skip
    print(f"bulk cat {BULK_MB} MB  via bastion (recorded) {b_rate / 1e6:.0f} MB/s; direct {d_rate / 1e6:.0f} MB/s; ratio {b_rate / d_rate:.2f}")
    print(f"{SESSIONS} recorded sessions  {cpu_pct:.3f} % of a core and {rss_mb:.3f} MiB per session, {cpu_pct * SESSIONS:.2f} % and "
          f"{rss_mb * SESSIONS:.1f} MiB for all (gateway idle RSS {rss0:.0f} MiB)")
    print(f"RESULT echo_added_p99_ms={v99 - d99:.2f} echo_bastion_p99_ms={v99:.2f} echo_direct_p99_ms={d99:.2f} "
          f"decide_inproc_p99_ms={d_in99:.3f} parse_only_p99_ms={parse99:.3f} decide_vs_parse_p99_ratio={d_in99 / parse99:.2f} "
          f"decide_context_p99_ms={d_ctx99:.3f} "
          f"bulk_bastion_mb_per_s={b_rate / 1e6:.0f} bulk_direct_mb_per_s={d_rate / 1e6:.0f} bulk_ratio={b_rate / d_rate:.2f} "
          f"sessions={SESSIONS} cpu_pct_per_session={cpu_pct:.3f} rss_mib_per_session={rss_mb:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
