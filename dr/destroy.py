"""数据安全销毁: the destruction of a registered system's backups, with a signed destruction record.

A destroyed stack's backups are not destroyed with it: its systems' sources stop being backed up
(their hosts are gone), their snapshots stay under the ordinary retention policy, and
``dr.retention.destroyed_min_days`` after the newest of them they may be destroyed — by the
critical ``dr.destroy`` operation, which two approvers other than the requester must approve.

Destruction removes, in the primary repository and in every copy, each snapshot of the system's
sources, then prunes: packs holding only their data are deleted, packs shared with other data
are rewritten without it (deduplicated chunks that other sources also reference stay — they are
those sources' data too). Packs of a local repository are overwritten with zeros before they are
unlinked (best effort: a copy-on-write or flash file system may keep old blocks; the packs were
only ever SM4-GCM ciphertext). The plaintext left on this host — the mirror of a remote file tree,
the streamed WAL directory — is removed too. The record (what was destroyed, where, when, who
asked and who approved, the prune figures) is SM2-signed and kept under
``var/dr/destructions/<id>/``; the gate's audit record holds its SM3.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.crypto import sm3_hex
from dr.repo import RepoError, Repository

if TYPE_CHECKING:
    from control_plane.context import Context


def _system(rt: Context, key: str) -> tuple[Any, Any]:
    from control_plane.report.registry import load_registry

    s = rt.settings
    return load_registry(s.path(s.report.registry_file) if s.report.registry_file else None).system(key)


def _repositories(rt: Context) -> list[tuple[str, Repository]]:
    """The primary repository and every copy that exists."""
    from dr.access import open_repo, repo_path, s3_backend

    out = [("primary", open_repo(rt, create=False))]
    for dest in rt.settings.dr.copies:
        path = rt.settings.path(dest)
        if (path / "config").exists():
            out.append((str(path), open_repo(rt, path, create=False)))
    for bucket in rt.settings.dr.copy_buckets:
        backend = s3_backend(rt, bucket)
        if backend.exists("config"):
            out.append((f"s3://{bucket}", open_repo(rt, repo_path(rt).parent / f"copy-{bucket}", create=False, backend=backend)))
    return out


def _belongs(snap: dict[str, Any], code: str) -> bool:
    return str(snap.get("source", "")).startswith(code + ".")


def plan(rt: Context, key: str, *, now: datetime | None = None) -> dict[str, Any]:
    """What destroying a system's backups would remove; RepoError when it may not be done yet (and why)."""
    from dr.sources import deployed, sources

    dept, sysm = _system(rt, key)
    now = now or datetime.now(timezone.utc)
    mine = {n: s for n, s in sources(rt).items() if s.system == sysm.code}
    live = sorted(f"{n} (on {s.host})" for n, s in mine.items() if deployed(rt, s))
    if live:
        raise RepoError(f"system {sysm.name} ({sysm.code}) still runs: {', '.join(live)}; its backups are still being made",
                        hint="destroy its stack first (govctl deploy destroy), or remove the data from the registry")  # fmt: skip
    repos = []
    newest: datetime | None = None
    for where, repo in _repositories(rt):
        snaps = [s for s in repo.snapshots() if _belongs(s, sysm.code)]
        for s in snaps:
            t = datetime.fromisoformat(s["time"])
            newest = t if newest is None or t > newest else newest
        repos.append({"repository": where, "snapshots": [{"id": s["id"], "source": s["source"], "time": s["time"], "tags": s.get("tags", []),
                                                          "bytes": (s.get("stats") or {}).get("bytes")} for s in snaps]})  # fmt: skip
    if newest is None:
        raise RepoError(f"system {sysm.name} ({sysm.code}) has no backups to destroy")
    keep_days = rt.settings.dr.retention.destroyed_min_days
    until = newest + timedelta(days=keep_days)
    if now < until:
        raise RepoError(f"the backups of {sysm.name} ({sysm.code}) are kept at least {keep_days} days after the newest ({newest.isoformat()}): "
                        f"not before {until.isoformat()}", hint="dr.retention.destroyed_min_days sets the period")  # fmt: skip
    local = [p for n in mine for p in (rt.settings.var / "dr" / "mirror" / n, rt.settings.var / "dr" / "wal" / n) if p.exists()]
    return {"system": {"code": sysm.code, "name": sysm.name, "department": dept.code, "department_name": dept.name, "level": sysm.level},
            "repositories": repos, "local_copies": [str(p) for p in local], "newest": newest.isoformat()}  # fmt: skip


def _shred(repo: Repository) -> None:
    """Packs of a local repository are overwritten with zeros before they are deleted."""
    from control_plane.objects import LocalBackend

    backend = repo.backend
    if not isinstance(backend, LocalBackend):
        return
    original = backend.delete

    def delete(name: str) -> None:
        path = backend.root / name
        if name.startswith("data/") and path.is_file():
            size = path.stat().st_size
            with open(path, "r+b") as f:
                left = size
                while left > 0:
                    n = min(left, 1 << 20)
                    f.write(b"\0" * n)
                    left -= n
                f.flush()
                os.fsync(f.fileno())
        original(name)

    backend.delete = delete  # type: ignore[method-assign]


def destroy(rt: Context, key: str, *, by: str, approvers: tuple[str, ...] = (), op_id: str = "") -> dict[str, Any]:
    """Destroy a system's backups everywhere and keep a signed destruction record."""
    from control_plane.report.seal import canonical, sign
    from dr.retention import prune

    p = plan(rt, key)
    code = p["system"]["code"]
    results = []
    for where, repo in _repositories(rt):
        entry = next(r for r in p["repositories"] if r["repository"] == where)
        ids = [s["id"] for s in repo.snapshots() if _belongs(s, code)]
        repo.drop_snapshots(ids, command=f"destroy {code}")
        _shred(repo)
        pr = prune(repo)
        results.append({**entry, "snapshots_destroyed": len(ids), "prune": pr})
    for path in p["local_copies"]:
        shutil.rmtree(path, ignore_errors=True)
    did = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    record = {"destruction": did, "kind": "数据安全销毁", "at": datetime.now(timezone.utc).isoformat(), "system": p["system"], "requested_by": by,
              "approvers": list(approvers), "operation": op_id, "repositories": results, "local_copies_removed": p["local_copies"],
              "newest_backup": p["newest"], "retention_min_days": rt.settings.dr.retention.destroyed_min_days,
              "method": "snapshots removed; packs holding only this data deleted (local packs overwritten with zeros first), shared packs rewritten "
                        "without it; plaintext mirrors and streamed WAL on the backup host removed"}  # fmt: skip
    out = rt.settings.var / "dr" / "destructions" / did
    out.mkdir(parents=True, exist_ok=True)
    data = canonical(record)
    (out / "record.json").write_bytes(data)
    (out / "record.sig.json").write_text(json.dumps(sign(rt.signer, data), indent=1))
    (out / "record.html").write_text(_html(record), encoding="utf-8")
    return {"destruction": did, "system": code, "snapshots_destroyed": sum(r["snapshots_destroyed"] for r in results), "record": str(out / "record.json"),
            "record_sm3": sm3_hex(data), "repositories": len(results)}  # fmt: skip


def records(rt: Context) -> list[dict[str, Any]]:
    """Every destruction record, newest first."""
    d = rt.settings.var / "dr" / "destructions"
    out = []
    for f in sorted(d.glob("*/record.json"), reverse=True) if d.is_dir() else []:
        r = json.loads(f.read_bytes())
        out.append({"destruction": r["destruction"], "at": r["at"], "system": r["system"]["code"], "system_name": r["system"]["name"],
                    "requested_by": r["requested_by"], "approvers": r["approvers"],
                    "snapshots": sum(x["snapshots_destroyed"] for x in r["repositories"]), "record": str(f)})  # fmt: skip
    return out


def _html(r: dict[str, Any]) -> str:
    from html import escape

    rows = "".join(f"<tr><td>{escape(x['repository'])}</td><td>{x['snapshots_destroyed']}</td><td>{x['prune']['packs_deleted']}</td>"
                   f"<td>{x['prune']['packs_repacked']}</td></tr>" for x in r["repositories"])  # fmt: skip
    s = r["system"]
    return (f"<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>数据安全销毁记录 {escape(r['destruction'])}</title><body>"
            f"<h1>数据安全销毁记录</h1><p>系统：<b>{escape(s['name'])}</b>（{escape(s['code'])}），{escape(s['department_name'])}</p>"
            f"<p>销毁时间：{escape(r['at'])}；申请人：{escape(r['requested_by'])}；批准人：{escape('、'.join(r['approvers']) or '—')}；"
            f"最新备份时间：{escape(r['newest_backup'])}（保留期 {r['retention_min_days']} 天）</p>"
            f"<table border='1'><tr><th>备份仓库</th><th>销毁快照数</th><th>删除数据包</th><th>重写数据包</th></tr>{rows}</table>"
            f"<p>本机明文副本（镜像、WAL）已删除：{escape('、'.join(r['local_copies_removed']) or '无')}</p>"
            "<p>本记录的 JSON 文本以平台 SM2 密钥签名（record.sig.json）。</p></body></html>")
