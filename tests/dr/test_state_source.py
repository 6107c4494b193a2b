"""The control plane's own state is a default backup source: a consistent SQLite copy taken while the ledger is written, the anchors, public keys only."""

from __future__ import annotations

import threading
from pathlib import Path

from control_plane.audit import AuditEvent, Ledger
from control_plane.context import Context
from control_plane.db import make_engine


def test_the_control_plane_source_restores_a_ledger_that_verifies(tmp_path: Path) -> None:
    """Backed up while another thread appends: the restored state DB's chain verifies against the restored public key; no secret is in the snapshot."""
    from control_plane.config import Settings, load
    from control_plane.crypto import SM2PublicKey
    from control_plane.wiring import context_for
    from dr.files import restore
    from dr.service import backup_source, open_repo
    from tests.conftest import make_test_config, write_config

    assert Settings().dr.sources["control-plane"].type == "control-plane"  # a default source: nothing to configure
    data = make_test_config(var_dir=tmp_path / "var")
    data["dr"]["sources"] = {"control-plane": {"type": "control-plane"}}
    rt: Context = context_for(load(write_config(tmp_path / "govctl.yaml", data)))
    for i in range(50):
        rt.ledger.append(AuditEvent(actor="ops", operation="test.before", params={"i": i}))
    rt.ledger.checkpoint()
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            rt.ledger.append(AuditEvent(actor="ops", operation="test.during", params={"i": i}))
            i += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        res = backup_source(rt, "control-plane")
    finally:
        stop.set()
        t.join(30)
    assert res["stats"]["contents"]["state_db"] == "sqlite" and res["stats"]["contents"]["anchors"], res
    out = tmp_path / "restored"
    restore(open_repo(rt, create=False), res["snapshot"], out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "state/govctl.db" in files and "audit/checkpoints.jsonl" in files and "keys/platform.pub.pem" in files, files
    assert not [f for f in files if f.endswith((".key", ".json")) and not f.startswith("audit/")], files  # no private key, no generated password
    for f in out.joinpath("keys").iterdir():
        assert f.read_bytes().startswith((b"-----BEGIN PUBLIC KEY-----", b"-----BEGIN CERTIFICATE-----")), f
    pub = SM2PublicKey.from_pem((out / "keys" / "platform.pub.pem").read_bytes())
    assert pub.key_id == rt.signer.public_key.key_id
    restored = Ledger(make_engine(f"sqlite:///{out / 'state' / 'govctl.db'}"), rt.signer, anchor_file=out / "audit" / "checkpoints.jsonl")
    rep = restored.verify(pub)
    assert rep.ok and rep.records >= 50, rep
