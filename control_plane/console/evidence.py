"""An evidence pack for an assessor (等保测评): what happened in a period, as a zip signed with the platform key.

``manifest.json`` lists every file with its SM3 digest; ``manifest.sig.json`` is the SM2 signature
of the manifest (verify it with the platform public key, ``govctl keys show``). Inside: the
operations with their approvals, break-glass reviews, role and user changes, retention runs,
restore tests and drills (with their own signed reports), the audit verification at the time of
packing, and the ledger's records for the period as JSON lines.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from control_plane import clock
from control_plane.crypto import sm3_hex
from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.context import Context

MAX_DAYS = 400


def _records(ctx: Context, since: str, until: str, operation: str | None = None) -> list[dict[str, Any]]:
    out = []
    for r in ctx.ledger.query(operation=operation, since=since, until=until, limit=200000, newest_first=False):
        d = dict(r.__dict__)
        out.append(d)
    return out


def pack(ctx: Context, since: str, until: str, *, by: str) -> tuple[bytes, str]:
    """(zip bytes, file name) for [since, until] (dates, Asia/Shanghai days are close enough for an assessor's period; UTC here)."""
    from control_plane.gate.models import approvals, operations, reviews
    from control_plane.report.seal import canonical, sign

    d0, d1 = date.fromisoformat(since), date.fromisoformat(until)
    if d1 < d0 or (d1 - d0).days > MAX_DAYS:
        raise GovctlError(f"期间无效 / the period {since}..{until} is reversed or longer than {MAX_DAYS} days", hint="pick a start before the end")
    lo, hi = f"{d0.isoformat()}T00:00:00", f"{(d1 + timedelta(days=1)).isoformat()}T00:00:00"
    with ctx.engine.connect() as c:
        ops = [dict(r._mapping) for r in c.execute(select(operations).where(and_(operations.c.created >= lo, operations.c.created < hi)).order_by(operations.c.created))]
        ids = [o["id"] for o in ops]
        aps = [dict(r._mapping) for r in c.execute(select(approvals).where(approvals.c.op_id.in_(ids)))] if ids else []
        revs = [dict(r._mapping) for r in c.execute(select(reviews).where(and_(reviews.c.opened >= lo, reviews.c.opened < hi)))]
    for o in ops:
        o["params"] = json.loads(o["params"])
        o["approvals"] = [a for a in aps if a["op_id"] == o["id"]]
        o.pop("preview", None)
        o.pop("result", None)
    files: dict[str, bytes] = {}

    def put(name: str, value: Any) -> None:
        files[name] = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False, indent=1, default=str).encode()

    put("approvals/operations.json", [o for o in ops if o["approvals_needed"] > 0 or o["break_glass"]])
    put("break_glass/reviews.json", revs)
    put("iam/role_and_user_changes.json", [r for r in _records(ctx, lo, hi, "iam.*") if r["operation"] in ("iam.role.change", "iam.user.create", "iam.user.change")])
    put("retention/runs.json", _records(ctx, lo, hi, "soc.retention.apply") + _records(ctx, lo, hi, "backup.prune"))
    put("restore/tests.json", _records(ctx, lo, hi, "dr.restore"))
    from dr.drill import list_drills

    drills = [d for d in list_drills(ctx) if lo <= str(d["started"]) < hi]
    put("drills/drills.json", drills)
    for d in drills:
        for f in ("report.json", "report.sig.json", "report.html"):
            p = Path(d["path"]) / f
            if p.is_file():
                files[f"drills/{d['id']}/{f}"] = p.read_bytes()
    rep = ctx.ledger.verify()
    put("audit/verification.json", rep.as_dict())
    files["audit/records.jsonl"] = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in _records(ctx, lo, hi)).encode()
    manifest = {"kind": "govctl evidence pack", "period": {"from": since, "to": until}, "made": clock.now_iso(), "made_by": by,
                "platform_key": ctx.signer.public_key.key_id, "files": {n: {"sm3": sm3_hex(b), "bytes": len(b)} for n, b in sorted(files.items())}}  # fmt: skip
    mbytes = canonical(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in sorted(files.items()):
            z.writestr(n, b)
        z.writestr("manifest.json", mbytes)
        z.writestr("manifest.sig.json", json.dumps(sign(ctx.signer, mbytes), indent=1))
        z.writestr("README.txt", "证据包 / evidence pack\n"
                   "manifest.json 列出每个文件的 SM3 摘要；manifest.sig.json 是平台 SM2 密钥对 manifest.json 的签名。\n"
                   "manifest.json lists each file's SM3; manifest.sig.json is the platform key's SM2 signature of manifest.json "
                   "(verify with the public key from `govctl keys show`).\n")  # fmt: skip
    return buf.getvalue(), f"govctl-evidence-{since}-{until}.zip"
