"""Disaster-recovery drills on the local pools, with measured RPO and RTO and a signed report.

1. A primary PostgreSQL runs on the primary pool's data host (its own network namespace); it is
   base-backed-up into the repository and its WAL streamed and shipped continuously. A directory
   of the primary's files is watched by the real-time watcher.
2. Canary rows (sequence number, client time) are written several times a second, and canary
   files beside them.
3. Loss: the primary's link is cut and its PostgreSQL crashes (immediate stop). Whatever WAL had
   been shipped by then is all there is.
4. Recovery: the latest base backup and WAL are restored onto the backup pool's data host and
   brought up there (recovery to the end of the WAL, then promotion); the failover playbook marks
   the backup pool as serving.
5. Verification: the canaries are read back through the backup host's address and compared row
   by row (SM3 over the rows) with what the writer recorded; the files are restored from the
   latest real-time snapshot and each checked by SM3.
6. RPO = time of the last canary written − time of the last canary recovered (for rows, and
   separately for files); RTO = loss →
   verified service. The report (JSON signed with SM2, and HTML in Chinese) is kept under
   var/dr/drills/<id>/ and listed by ``govctl dr drills``. ``cleanup`` fails back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Float, String, Table, Text, select

from control_plane.crypto import sm3_hex
from dr.pg import PgTarget, WalStreamer, base_backup, restore_pg, stop_restored
from dr.repo import RepoError
from control_plane.db import metadata

if TYPE_CHECKING:
    from control_plane.context import Context

drills = Table(
    "dr_drills", metadata,
    Column("id", String(32), primary_key=True), Column("started", String(40), nullable=False), Column("stack", String(64), nullable=False),
    Column("rpo_s", Float), Column("rto_s", Float), Column("status", String(24), nullable=False), Column("path", Text, nullable=False),
    Column("cleaned", String(40)), Column("system", String(64)), Column("plan", String(64)), Column("approvers", Text),
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _sh(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=300, **kw)
    if check and p.returncode != 0:
        raise RepoError(f"{' '.join(argv[:6])}… failed: {(p.stderr or p.stdout).strip()[-300:]}")
    return p


def _hosts(rt: Context, stack: str) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """(name, ip, netns) of the primary and the backup data hosts of a deployed local stack."""
    from control_plane.deploy.service import outputs

    spec = rt.settings.deploy.stacks.get(stack)
    outs = outputs(rt, stack)
    if not spec or spec.get("target") != "local" or not outs.get("primary_hosts"):
        raise RepoError(f"stack {stack!r} is not a deployed local stack", hint="deploy it first: govctl deploy up --stack " + stack)
    prefix = spec.get("local_prefix", "gc")

    def pick(role: str) -> tuple[str, str, str]:
        hosts = outs.get(f"{role}_hosts") or {}
        name = next((h for h in sorted(hosts) if "-data-" in h), None) or sorted(hosts)[0]
        return name, hosts[name], f"{prefix}-{name}"

    return pick("primary"), pick("backup")


def system_for(rt: Context, key: str, stack: str) -> dict[str, Any]:
    """A registered system (by code or name) whose targets a drill on ``stack`` is judged against; a clear error otherwise."""
    from control_plane.report.registry import RegistryError, load_registry

    s = rt.settings
    reg = load_registry(s.path(s.report.registry_file) if s.report.registry_file else None)
    dept, sysm = reg.system(key)
    if sysm.stacks and stack not in sysm.stacks:
        raise RegistryError(f"system {sysm.name} ({sysm.code}) runs on {', '.join(sysm.stacks)}, not on stack {stack!r}",
                            hint=f"drill it there: govctl dr drill --system {sysm.code} --stack {sysm.stacks[0]}")  # fmt: skip
    return {"code": sysm.code, "name": sysm.name, "department": dept.code, "department_name": dept.name, "level": sysm.level,
            "targets": {"rpo_s": sysm.rpo_s, "rto_s": sysm.rto_s}, "plans": [p.code for p in reg.plans_for(sysm.code)]}  # fmt: skip


def judge(rpo_s: float | None, rto_s: float | None, targets: dict[str, float | None]) -> tuple[dict[str, bool | None], list[str]]:
    """Each measured figure against its target: True met, False missed (or not measured), None no target; and why it failed, in words."""
    verdict: dict[str, bool | None] = {}
    missed: list[str] = []
    for key, label, measured in (("rpo_s", "RPO", rpo_s), ("rto_s", "RTO", rto_s)):
        target = targets.get(key)
        if target is None:
            verdict[key] = None
            continue
        verdict[key] = measured is not None and measured <= target
        if not verdict[key]:
            missed.append(f"{label} {measured} s > target {target:g} s" if measured is not None else f"{label} not measured (target {target:g} s)")
    return verdict, missed


def run(rt: Context, *, stack: str = "local", canary_s: float = 5.0, by: str = "govctl", progress: Any = None, fill_mb: int = 0,
        system: str | None = None, approvers: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """Run one drill end to end; returns the report. ``fill_mb`` loads that much pgbench data into the primary first.

    With ``system`` (a registered system's code or name) the measured RPO and RTO are judged
    against that system's targets: the drill passes only if it recovered everything it should
    and met both.
    """
    from control_plane.playbook import service as pb
    from dr.service import open_repo

    target_system = system_for(rt, system, stack) if system else None  # a wrong name fails before anything starts
    say = progress or (lambda msg: None)
    did = _now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    (pname, pip, pns), (bname, bip, bns) = _hosts(rt, stack)
    sup = rt.supervisor
    c = rt.settings.services.postgres
    pw = secrets.token_urlsafe(24)  # the drill's own cluster gets its own password, never the control plane's
    base = sup.root / "drills" / did
    base.mkdir(parents=True)
    os.chmod(base, 0o755)
    os.chmod(base.parent, 0o755)
    primary = PgTarget(sup._pg_bin(), pip, 5432, c.user, pw, pns, sup._as_user())
    standby = PgTarget(sup._pg_bin(), bip, 5432, c.user, pw, bns, sup._as_user())
    pdata = base / "primary"
    source = f"drill-{did}"
    repo = open_repo(rt)
    started = _now()
    report: dict[str, Any] = {"drill": did, "stack": stack, "started": started.isoformat(), "by": by, "approvers": list(approvers),
                              "primary": {"host": pname, "address": pip}, "backup": {"host": bname, "address": bip}, "steps": []}  # fmt: skip

    def step(name: str, **info: Any) -> None:
        report["steps"].append({"at": _now().isoformat(), "step": name, **info})
        say(name)

    gateway = str(rt.settings.deploy.stacks[stack].get("local_gateway", "10.77.0.1/16")).split("/")[0]
    _init_primary(rt, primary, pdata, base, allow=[gateway])
    step("primary PostgreSQL started on the primary pool", host=pname)
    import psycopg

    def conn(t: PgTarget) -> psycopg.Connection:
        return psycopg.connect(host=t.host, port=t.port, user=t.user, password=t.password, dbname="postgres", autocommit=True, connect_timeout=5)

    if fill_mb > 0:  # a database of a realistic size (pgbench: about 15 MB per scale unit)
        _sh(str(primary.bindir / "pgbench"), "-i", "-q", "-s", str(max(1, fill_mb // 15)), "-h", primary.host, "-p", str(primary.port), "-U", primary.user,
            "postgres", env={**os.environ, "PGPASSWORD": primary.password})  # fmt: skip
        step("primary filled with pgbench data", mb=fill_mb)
    with conn(primary) as cx:
        cx.execute("CREATE TABLE IF NOT EXISTS drill_canary (seq bigint PRIMARY KEY, written timestamptz NOT NULL, payload text NOT NULL)")
    sid, st = base_backup(rt, repo, source, primary)
    step("base backup of the primary", snapshot=sid, files=st["files"], bytes=st["bytes"])
    wal = WalStreamer(rt, source, target=primary).start()
    stop_ship = threading.Event()
    shipped: list[str] = []
    ship_errors: list[str] = []

    def shipper() -> None:
        while not stop_ship.is_set():
            try:
                s = wal.ship(repo)
                if s:
                    shipped.append(s)
            except Exception as exc:  # noqa: BLE001 - the next round retries; the report lists it
                ship_errors.append(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:300])
            stop_ship.wait(1.0)

    th = threading.Thread(target=shipper, daemon=True)
    th.start()
    # canary files on the primary's volume, shipped by the real-time watcher
    from dr.realtime import Watcher

    pfiles = base / "primary-files"
    pfiles.mkdir()
    fsource = f"drill-{did}-files"
    watcher = Watcher(repo, pfiles, fsource, interval_s=1.0).start()
    written: list[tuple[int, str, str]] = []
    files_written: list[tuple[str, str, str]] = []  # (name, time, SM3 of content)
    t_end = time.monotonic() + canary_s
    with conn(primary) as cx:
        seq = 0
        while time.monotonic() < t_end:
            seq += 1
            ts, payload = _now().isoformat(), sm3_hex(f"canary {did} {seq}".encode())
            cx.execute("INSERT INTO drill_canary VALUES (%s, %s, %s)", (seq, ts, payload))
            written.append((seq, ts, payload))
            if seq % 3 == 0:
                body = f"{seq} {ts} {payload}\n".encode() * 200
                (pfiles / f"canary-{seq:06d}.txt").write_bytes(body)
                files_written.append((f"canary-{seq:06d}.txt", _now().isoformat(), sm3_hex(body)))
            time.sleep(0.1)
    step("canaries written", count=len(written), files=len(files_written), last=written[-1][1], wal_streaming=wal.alive(), wal_error=wal.error())
    # -- the loss ------------------------------------------------------------------------------
    t_loss = _now()
    _sh("ip", "netns", "exec", pns, "ip", "link", "set", "eth0", "down")
    stop_restored(rt, pdata, mode="immediate")
    watcher.abandon()  # its unshipped journal is lost with the primary
    step("primary lost: its link cut and PostgreSQL crashed")
    stop_ship.set()
    th.join(timeout=30)
    wal.stop()
    last_ship = wal.ship(repo)  # what pg_receivewal had flushed before the loss
    step("last WAL shipped", shipments=len(shipped) + (1 if last_ship else 0), errors=ship_errors[-3:])
    # -- recovery on the backup pool -------------------------------------------------------------
    rdata = base / "restored"
    res = restore_pg(rt, repo, source, rdata, to="latest", run_as=standby)
    step("restored and promoted on the backup pool", host=bname, base=res["base"], wal_shipments=res["wal_snapshots"])
    from dr.files import restore as restore_files

    fsnaps = [x for x in repo.snapshots() if x["source"] == fsource]
    rfiles = base / "restored-files"
    restore_files(repo, fsnaps[-1]["id"], rfiles)
    got_files = {p.name: sm3_hex(p.read_bytes()) for p in rfiles.glob("canary-*.txt")}
    files_ok = all(got_files.get(n) == h for n, _, h in files_written if n in got_files) and set(got_files) <= {n for n, _, _ in files_written}
    step("files restored on the backup pool", snapshot=fsnaps[-1]["id"], recovered=len(got_files))
    fo = pb.run(rt, "failover", [bname], actor=by)
    step("failover playbook", status=fo.status)
    with conn(standby) as cx:
        rows = cx.execute("SELECT seq, written, payload FROM drill_canary ORDER BY seq").fetchall()
    t_ok = _now()
    got = [(int(s), w.isoformat(), p) for s, w, p in rows]
    n = len(got)
    same = n > 0 and sm3_hex(json.dumps([r[2] for r in got]).encode()) == sm3_hex(json.dumps([r[2] for r in written[:n]]).encode())
    last_rec = datetime.fromisoformat(got[-1][1]) if got else None
    last_wr = datetime.fromisoformat(written[-1][1])
    rpo = (last_wr - last_rec).total_seconds() if last_rec else None
    rto = (t_ok - t_loss).total_seconds()
    recovered_files = [f for f in files_written if f[0] in got_files]
    rpo_files = (datetime.fromisoformat(files_written[-1][1]) - datetime.fromisoformat(recovered_files[-1][1])).total_seconds() if recovered_files else None
    ok = same and files_ok and bool(recovered_files) and fo.status == "successful"
    if target_system is not None:
        met, missed = judge(round(rpo, 3) if rpo is not None else None, round(rto, 3), target_system["targets"])
        report.update({"system": target_system, "targets_met": met, "targets_missed": missed})
        ok = ok and not missed
    step("verified through the backup pool's address", canaries_recovered=n, canaries_written=len(written), identical_prefix=same)
    report.update({
        "status": "passed" if ok else "failed", "loss_at": t_loss.isoformat(), "verified_at": t_ok.isoformat(),
        "canaries": {"written": len(written), "recovered": n, "last_written": written[-1][1], "last_recovered": got[-1][1] if got else None,
                     "checksum_sm3_match": same},
        "file_canaries": {"written": len(files_written), "recovered": len(recovered_files), "checksum_sm3_match": files_ok,
                          "last_written": files_written[-1][1] if files_written else None,
                          "last_recovered": recovered_files[-1][1] if recovered_files else None},
        "rpo_files_s": round(rpo_files, 3) if rpo_files is not None else None,
        "rpo_s": round(rpo, 3) if rpo is not None else None, "rto_s": round(rto, 3), "snapshot_base": sid, "source": source,
        "database_bytes": st["bytes"],
    })  # fmt: skip
    _store(rt, report, base)
    return report


def _chown_tree(top: Path, user: Any) -> None:
    for p in [top, *top.rglob("*")]:
        os.lchown(p, user.pw_uid, user.pw_gid)


def _init_primary(rt: Context, t: PgTarget, data: Path, base: Path, *, allow: list[str]) -> None:
    """initdb a fresh cluster and start it inside the primary host's namespace, reachable from ``allow`` (the gateway) only."""
    from control_plane.credentials import write_private

    pwfile = base / ".pw"
    write_private(pwfile, (t.password + "\n").encode())
    if rt.supervisor.user is not None:
        _chown_tree(base, rt.supervisor.user)
    _sh(str(t.bindir / "initdb"), "-D", str(data), "-U", t.user, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", **t.as_user)
    pwfile.unlink()
    with open(data / "pg_hba.conf", "a") as f:
        for a in allow:
            f.write(f"host all all {a}/32 scram-sha-256\nhost replication all {a}/32 scram-sha-256\n")
    sock = base / "sock"
    sock.mkdir(exist_ok=True)
    if rt.supervisor.user is not None:
        _chown_tree(base, rt.supervisor.user)
    argv, kw = t.command([str(t.bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "primary.log"), "-w", "-o",
                          f"-p {t.port} -c listen_addresses={t.host} -c unix_socket_directories={sock} -c wal_level=replica -c max_wal_senders=5", "start"])  # fmt: skip
    _sh(*argv, **kw)


def _store(rt: Context, report: dict[str, Any], base: Path) -> None:
    from control_plane.report.seal import canonical, sign

    out = rt.settings.var / "dr" / "drills" / report["drill"]
    out.mkdir(parents=True, exist_ok=True)
    data = canonical(report)
    (out / "report.json").write_bytes(data)
    (out / "report.sig.json").write_text(json.dumps(sign(rt.signer, data), indent=1))
    (out / "report.html").write_text(html(report), encoding="utf-8")
    with rt.engine.begin() as cx:
        system = report.get("system") or {}
        cx.execute(drills.insert().values(id=report["drill"], started=report["started"], stack=report["stack"], rpo_s=report["rpo_s"],
                                          rto_s=report["rto_s"], status=report["status"], path=str(out), system=system.get("code"),
                                          plan=(system.get("plans") or [None])[0], approvers=json.dumps(report.get("approvers") or [])))  # fmt: skip
    report["files"] = {"json": str(out / "report.json"), "signature": str(out / "report.sig.json"), "html": str(out / "report.html"), "work": str(base)}


def html(r: dict[str, Any]) -> str:
    """The drill report in Chinese."""
    from html import escape

    rows = "".join(f"<tr><td>{escape(s['at'][11:23])}</td><td>{escape(STEP_ZH.get(s['step'], s['step']))}</td></tr>" for s in r["steps"])
    c = r["canaries"]
    return f"""<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>容灾演练报告 {escape(r['drill'])}</title>
<style>body{{font-family:"WenQuanYi Micro Hei",sans-serif;margin:2em}} td,th{{border:1px solid #999;padding:3px 8px}} table{{border-collapse:collapse}}</style></head><body>
<h1>容灾切换演练报告</h1>
<p>演练编号：{escape(r['drill'])}　资源池：{escape(r['stack'])}　发起人：{escape(r['by'])}　开始时间：{escape(r['started'][:19])}（UTC）</p>
<p>结论：<b>{'通过' if r['status'] == 'passed' else '未通过'}</b>　恢复点目标实测（RPO）：<b>{r['rpo_s']} 秒</b>　恢复时间实测（RTO）：<b>{r['rto_s']} 秒</b></p>
{_system_html(r)}
<p>主资源池主机 {escape(r['primary']['host'])}（{escape(r['primary']['address'])}）模拟失效；备资源池主机 {escape(r['backup']['host'])}（{escape(r['backup']['address'])}）接管服务。</p>
<p>写入数据库校验记录 {c['written']} 条，恢复 {c['recovered']} 条；已恢复部分逐条 SM3 校验{'一致' if c['checksum_sm3_match'] else '不一致'}。最后写入：{escape(c['last_written'][:23])}；最后恢复：{escape((c['last_recovered'] or '—')[:23])}。</p>
<p>写入校验文件 {r['file_canaries']['written']} 个，恢复 {r['file_canaries']['recovered']} 个，SM3 校验{'一致' if r['file_canaries']['checksum_sm3_match'] else '不一致'}；文件恢复点目标实测 {r['rpo_files_s']} 秒（实时监测每秒传送一次）。</p>
<table><tr><th>时间（UTC）</th><th>步骤</th></tr>{rows}</table>
<p>本报告 JSON 已以平台 SM2 密钥签名（report.sig.json）。</p></body></html>"""


LEVEL_ZH = {1: "一级", 2: "二级", 3: "三级", 4: "四级", 5: "五级"}


def _system_html(r: dict[str, Any]) -> str:
    """The system drilled and its targets, met or missed (nothing when the drill named no system)."""
    from html import escape

    sm = r.get("system")
    if not sm:
        return ""
    t, met = sm["targets"], r.get("targets_met", {})

    def one(key: str, label: str) -> str:
        if t.get(key) is None:
            return f"{label}未设目标"
        return f"{label}目标 ≤ {t[key]:g} 秒：{'达标' if met.get(key) else '未达标'}"

    level = f"，等保{LEVEL_ZH[sm['level']]}" if sm.get("level") else ""
    return (f"<p>演练系统：<b>{escape(sm['name'])}</b>（{escape(sm['code'])}，{escape(sm['department_name'])}{level}）　"
            f"{one('rpo_s', 'RPO')}　{one('rto_s', 'RTO')}</p>")


STEP_ZH = {
    "primary PostgreSQL started on the primary pool": "主资源池数据库启动",
    "base backup of the primary": "主库基础备份",
    "canaries written": "写入校验数据",
    "primary lost: its link cut and PostgreSQL crashed": "模拟主资源池失效（断网、数据库崩溃）",
    "last WAL shipped": "最后一次日志传送",
    "restored and promoted on the backup pool": "备资源池恢复并提升为主库",
    "files restored on the backup pool": "备资源池恢复文件",
    "failover playbook": "执行切换剧本",
    "verified through the backup pool's address": "通过备资源池地址校验数据",
}


def list_drills(rt: Context) -> list[dict[str, Any]]:
    """Every drill, newest first."""
    from sqlalchemy import inspect

    if not inspect(rt.engine).has_table("dr_drills"):
        return []
    with rt.engine.connect() as cx:
        return [dict(r._mapping) for r in cx.execute(select(drills).order_by(drills.c.started.desc()))]


def cleanup(rt: Context, did: str, *, by: str = "govctl") -> dict[str, Any]:
    """Fail back: stop the restored server, run the failback playbook, bring the primary's link back, remove the work files."""
    from control_plane.playbook import service as pb

    rows = [d for d in list_drills(rt) if d["id"] == did]
    if not rows:
        raise RepoError(f"no drill {did!r}", hint="list them: govctl dr drills")
    d = rows[0]
    (pname, _pip, pns), (bname, _bip, _bns) = _hosts(rt, d["stack"])
    base = rt.supervisor.root / "drills" / did
    if (base / "restored").exists():
        stop_restored(rt, base / "restored")
    fb = pb.run(rt, "failback", [bname], actor=by)
    _sh("ip", "netns", "exec", pns, "ip", "link", "set", "eth0", "up", check=False)
    shutil.rmtree(base, ignore_errors=True)
    with rt.engine.begin() as cx:
        cx.execute(drills.update().where(drills.c.id == did).values(cleaned=_now().isoformat()))
    return {"drill": did, "failback": fb.status, "primary_link": "up", "removed": str(base)}
