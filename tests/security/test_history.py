"""Root rewriting history: key pinning, no silent new key, gated rotation, external anchors, checkpoints on exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from control_plane.audit import AuditEvent
from control_plane.audit.models import checkpoint_payload, record_hash
from control_plane.config import load
from control_plane.crypto import SM2PrivateKey
from control_plane.crypto.keys import KeyMissing, _platform_cache
from control_plane.gate import OperationRequest
from control_plane.context import Context
from control_plane.wiring import context_for
from tests.conftest import make_test_config, write_config
from tests.gate.conftest import People


def _rewrite_everything(rt: Context, key: SM2PrivateKey, *, change_seq: int) -> None:
    """What root can do with database access and a key of its own: edit a record, re-hash the chain, re-sign every checkpoint."""
    with rt.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_records ORDER BY seq"))]
        prev = rows[0]["prev_hash"]
        for r in rows:
            if r["seq"] == change_seq:
                r["actor"] = "nobody"
            r["prev_hash"] = prev
            r["hash"] = record_hash(prev, r)
            prev = r["hash"]
            conn.execute(text("UPDATE audit_records SET actor=:actor, prev_hash=:prev_hash, hash=:hash WHERE seq=:seq"), r)
        heads = {r["seq"]: r["hash"] for r in rows}
        for cp in [dict(c._mapping) for c in conn.execute(text("SELECT * FROM audit_checkpoints"))]:
            h = heads[cp["seq"]]
            sig = key.sign(checkpoint_payload(cp["seq"], h, cp["ts"])).hex()
            conn.execute(text("UPDATE audit_checkpoints SET head_hash=:h, signature=:s, key_id=:k, public_key=:p WHERE seq=:q"),
                         {"h": h, "s": sig, "k": key.public_key.key_id, "p": key.public_key.to_hex(), "q": cp["seq"]})  # fmt: skip
    for f in rt.ledger.anchors():
        f.unlink(missing_ok=True)


def _records(rt: Context, n: int) -> None:
    for i in range(n):
        rt.ledger.append(AuditEvent(actor="alice", operation="deploy.preview", params={"i": i}))
    rt.ledger.checkpoint()


def test_a_rewritten_and_re_signed_history_fails_against_the_pinned_key(sqlite_runtime: Context) -> None:
    """Root edits a record, re-hashes the chain and re-signs with a new key: verify with the pin names it."""
    rt = sqlite_runtime
    _records(rt, 20)
    pin = rt.signer.public_key.key_id
    _rewrite_everything(rt, SM2PrivateKey.generate(), change_seq=5)
    unpinned = rt.ledger.verify()
    assert unpinned.ok and not unpinned.pinned and any("--pin" in n for n in unpinned.notes)  # self-consistent, and says it is unpinned
    pinned = rt.ledger.verify(pin=pin)
    assert not pinned.ok and "pinned key" in pinned.problem


def test_a_deleted_key_is_not_silently_replaced(tmp_path: Path) -> None:
    """With history in the ledger, a missing platform key is an error that says what to do, never a fresh key."""
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    rt = context_for(load(cfg))
    _records(rt, 3)
    (rt.settings.key_dir / "platform.key").unlink()
    _platform_cache.clear()
    with pytest.raises(KeyMissing, match="audit ledger it signed has records") as ei:
        _ = context_for(load(cfg)).signer
    assert "restore it from its backup" in ei.value.hint
    assert not (rt.settings.key_dir / "platform.key").exists()


def test_the_passphrase_is_not_beside_the_key(sqlite_runtime: Context) -> None:
    """The key file and its passphrase live apart (the passphrase outside var/), both 0600."""
    rt = sqlite_runtime
    _ = rt.signer
    pfile = rt.settings.key_passphrase_file()
    assert pfile.exists() and oct(pfile.stat().st_mode & 0o777) == "0o600"
    assert rt.settings.key_dir not in pfile.parents and rt.settings.var not in pfile.parents
    assert not (rt.settings.key_dir / "passphrase").exists()
    assert oct((rt.settings.key_dir / "platform.key").stat().st_mode & 0o777) == "0o600"


def test_rotation_is_gated_and_verifiable(people: People) -> None:
    """keys.rotate needs two approvers; afterwards the ledger verifies from the pinned old key through the hand-over."""
    rt, gate = people.rt, people.rt.gate
    _records(rt, 5)
    old = rt.signer.public_key.key_id
    v = gate.submit(people["secadmin"], OperationRequest("keys.rotate", "platform", {}, reason="annual rotation"))
    assert v.status == "pending_approval" and v.approvals_needed == 2
    gate.approve(people["approver"], v.id)
    gate.approve(people["approver2"], v.id)
    out = gate.run(people["secadmin"], v.id).result
    assert out["old_key_id"] == old and out["new_key_id"] == rt.signer.public_key.key_id != old
    _records(rt, 5)
    rep = rt.ledger.verify(pin=old)
    assert rep.ok and rep.keys == [old, out["new_key_id"]], rep.problem
    assert (rt.settings.key_dir / f"platform.{old}.retired").exists()


def test_a_forged_rotation_is_refused(people: People) -> None:
    """A rotation record not signed by the previous key (as root could append one) breaks verification."""
    rt = people.rt
    _records(rt, 3)
    pin = rt.signer.public_key.key_id
    mallory = SM2PrivateKey.generate()
    rt.ledger.append(AuditEvent(actor="root", operation="keys.rotated", target="platform", details={
        "old_key_id": pin, "new_key_id": mallory.public_key.key_id, "new_public_key": mallory.public_key.to_hex(),
        "ts": "2026-12-02T00:00:00Z", "signature": mallory.sign(b"whatever").hex()}))  # fmt: skip
    rt.ledger.signer = mallory
    _records(rt, 2)
    rep = rt.ledger.verify(pin=pin)
    assert not rep.ok and "not signed by the previous key" in " ".join([rep.problem, *rep.notes])
    assert rep.keys == [pin]  # the forged key never joins the chain


def test_the_province_receipt_is_an_external_anchor(sqlite_runtime: Context) -> None:
    """After an anchor arrives, verify reports it and how many records came after; rewriting before it is caught."""
    rt = sqlite_runtime
    _records(rt, 10)
    head = rt.ledger.signed_head()
    rt.ledger.add_external_anchor("province-receipt:2026-11:r1", head["seq"], head["head_hash"], "province_receipt", {"receipt": "signed"})
    _records(rt, 4)
    rep = rt.ledger.verify()
    assert rep.ok and rep.external_anchor["seq"] == head["seq"] and rep.records_after_external_anchor == 4
    _rewrite_everything(rt, rt.signer, change_seq=3)  # even re-signed with the real key
    rep = rt.ledger.verify()
    assert not rep.ok and "province holds" in rep.problem


def test_records_are_checkpointed_when_the_process_exits(tmp_path: Path) -> None:
    """Records written after the last checkpoint are signed on the way out, not left to vanish."""
    cfg = write_config(tmp_path / "govctl.yaml", make_test_config(var_dir=tmp_path / "var"))
    code = ("from control_plane.config import load; from control_plane.wiring import context_for; from control_plane.audit import AuditEvent;"
            f"rt = context_for(load({str(cfg)!r}));"
            "[rt.ledger.append(AuditEvent(actor='a', operation='deploy.preview')) for _ in range(7)]")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    rt = context_for(load(cfg))
    with rt.engine.connect() as conn:
        top = conn.execute(text("SELECT max(seq) FROM audit_checkpoints")).scalar()
    assert top == 7


def test_checkpoints_are_kept_write_once_in_the_backup_repository(sqlite_runtime: Context) -> None:
    """Each checkpoint becomes its own read-only file in the repository's anchors/ folder, never rewritten."""
    rt = sqlite_runtime
    repo = rt.settings.var / "dr" / "repo"
    repo.mkdir(parents=True)
    _records(rt, 3)
    files = sorted((repo / "anchors").glob("checkpoint-*.json"))
    assert files and oct(files[-1].stat().st_mode & 0o777) == "0o444"
    assert json.loads(files[-1].read_text())["seq"] == 3


def test_the_monthly_report_carries_the_signed_ledger_head() -> None:
    """The report template shows the key fingerprint and head that the province's receipt anchors."""
    tpl = (Path(__file__).parents[2] / "control_plane" / "report" / "templates" / "report.html.j2").read_text(encoding="utf-8")
    assert "d.audit.key_id" in tpl and "d.audit.head_seq" in tpl
