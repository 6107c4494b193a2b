"""Audit checkpoints and report archives written once to the object store (SeaweedFS), and read back from it."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from control_plane.context import Context
from control_plane.crypto import sm3_hex
from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.services]


def test_every_checkpoint_is_an_object_written_once_and_verify_reads_them(cluster: Cluster, cluster_rt: Context, tmp_path: Path) -> None:
    """The ledger's checkpoint lands in govctl-audit; a second write of other bytes is refused; truncation is caught from the bucket alone."""
    from control_plane.audit import AuditEvent, Ledger
    from control_plane.crypto import SM2PrivateKey
    from control_plane.db import make_engine, upgrade
    from control_plane.objects import store

    rt = cluster_rt
    for i in range(3):
        rt.ledger.append(AuditEvent(actor="alice", operation="test.cluster.anchor", target=f"t{i}", params={"i": i}))
    cp = rt.ledger.checkpoint()
    assert cp is not None
    st = rt.anchor_stores()[0]
    assert st.bucket == "govctl-audit"
    name = f"checkpoints/{cp['seq']:012d}.json"
    held = json.loads(st.read(name))
    assert (held["seq"], held["head_hash"], held["signature"]) == (cp["seq"], cp["head_hash"], cp["signature"])
    forged = json.dumps({**held, "head_hash": "0" * 64}).encode()
    with pytest.raises(FileExistsError, match="written once"):
        st.write_once(name, forged)  # the store refuses to replace it (If-None-Match: *)
    assert json.loads(st.read(name))["head_hash"] == cp["head_hash"]
    rep = rt.ledger.verify()
    assert rep.ok and rep.anchors >= 1, rep

    # a ledger of its own (its own prefix in the bucket): the DB's tail, its checkpoints and the anchor file deleted; the bucket still tells
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(eng)
    own = store(rt.settings, "govctl-audit")
    own.prefix = f"test-{uuid.uuid4().hex}/"
    led = Ledger(eng, SM2PrivateKey.generate(), anchor_file=tmp_path / "anchor.jsonl", checkpoint_every=5, stores=lambda: [own])
    for i in range(12):
        led.append(AuditEvent(actor="a", operation="op", params={"i": i}))
    assert own.list("checkpoints/") == ["checkpoints/000000000005.json", "checkpoints/000000000010.json"]
    with eng.begin() as c:
        c.execute(text("DELETE FROM audit_records WHERE seq > 7"))
        c.execute(text("DELETE FROM audit_checkpoints WHERE seq > 7"))
    (tmp_path / "anchor.jsonl").unlink()
    rep = led.verify()
    assert not rep.ok and rep.first_bad == 8 and "truncated" in (rep.problem or ""), rep


def test_a_report_is_archived_once_and_another_host_reads_it_from_the_archive(cluster: Cluster, cluster_rt: Context, services) -> None:  # noqa: ANN001
    """Build writes every file to govctl-reports; with the files gone from this host the revision comes back from there; an altered archive fails verify."""
    from control_plane.report import store

    rt = cluster_rt
    now = datetime.now()
    month = f"{now.year:04d}-{now.month:02d}"
    b = store.build(rt, month, actor="test", prom_url=services.settings.services.prometheus.url, render=False)
    arch = rt.object_store("govctl-reports")
    prefix = f"{month}/r{b.revision}/{b.digest_sm3}/"
    assert sorted(n[len(prefix):] for n in arch.list(prefix)) == ["report.json", "report.sig.json"]
    assert arch.read(prefix + "report.json") == (b.path / "report.json").read_bytes()
    assert store.verify_revision(rt, b)["archived"] == f"s3://govctl-reports/{prefix}"

    shutil.rmtree(b.path)  # a control plane on another host never had these files
    again = store.get(rt, month, b.revision)
    assert sm3_hex((again.path / "report.json").read_bytes()) == b.digest_sm3
    assert store.verify_revision(rt, again)["ok"]

    shutil.rmtree(again.path)  # objects planted beside the revision's files: one in a sub-folder, one hidden (SeaweedFS itself refuses `..` in a key)
    for planted in ("nested/planted.txt", ".planted"):
        arch.write_once(prefix + planted, b"planted")
        with pytest.raises(store.ReportError, match="unexpected archived object"):
            store.get(rt, month, b.revision)
        assert not again.path.exists() and not list(again.path.parent.glob(".fetch-*"))  # refused before anything was written
        arch.delete(prefix + planted)
    arch.write_once(prefix + "report.pdf", b"%PDF- a forged page nobody signed")  # a readable form the recorded SM3 does not cover
    again = store.get(rt, month, b.revision)
    pdf = (again.path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"forged" not in pdf  # rendered here from the verified JSON, not taken from the bucket
    assert (again.path / "report.html").exists() and (again.path / "report.xlsx").exists()
    arch.delete(prefix + "report.pdf")

    arch.delete(prefix + "report.json")  # whoever holds the S3 key may delete (the bucket refuses rewrites, not deletes) and write anew
    arch.write_once(prefix + "report.json", b'{"month": "forged"}')
    with pytest.raises(store.ReportError, match="archived report.json differs"):
        store.verify_revision(rt, again)
