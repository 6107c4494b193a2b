"""The audit ledger on SQLite and on our real PostgreSQL: append, checkpoints, verify, query."""

from __future__ import annotations

import json

from sqlalchemy import text

from control_plane.audit import AuditEvent
from control_plane.audit.models import GENESIS, params_digest, record_hash
from control_plane.context import Context


def _fill(rt: Context, n: int, **kw: object) -> None:
    for i in range(n):
        rt.ledger.append(AuditEvent(actor=f"user{i % 3}", operation="deploy.up" if i % 2 else "playbook.run",
                                    target=f"pool-{i % 2}", params={"i": i}, **kw))  # fmt: skip


def test_append_links_records(runtime: Context) -> None:
    """Each record's prev_hash is its predecessor's hash, and its hash covers its content."""
    _fill(runtime, 5)
    recs = runtime.ledger.query(newest_first=False)
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev_hash == GENESIS
    for a, b in zip(recs, recs[1:]):
        assert b.prev_hash == a.hash
    for r in recs:
        assert record_hash(r.prev_hash, r) == r.hash
    assert recs[2].params_digest == params_digest({"i": 2})


def test_checkpoints_every_n_and_anchor(runtime: Context) -> None:
    """A signed checkpoint lands every N records, in the DB and in the anchor file."""
    runtime.ledger.checkpoint_every = 4
    _fill(runtime, 10)
    with runtime.engine.connect() as c:
        seqs = [r[0] for r in c.execute(text("SELECT seq FROM audit_checkpoints ORDER BY seq"))]
    assert seqs == [4, 8]
    anchored = [json.loads(x)["seq"] for x in runtime.ledger.anchor_file.read_text().splitlines()]
    assert anchored == [4, 8]
    cp = runtime.ledger.checkpoint()
    assert cp is not None and cp["seq"] == 10
    assert runtime.ledger.checkpoint() is None
    rep = runtime.ledger.verify()
    assert rep.ok and rep.records == 10 and rep.checkpoints == 3 and rep.anchors == 3


def test_verify_detects_edit(runtime: Context) -> None:
    """Editing one field of one record is found at that record."""
    _fill(runtime, 12)
    with runtime.engine.begin() as c:
        c.execute(text("UPDATE audit_records SET outcome = 'failed' WHERE seq = 7"))
    rep = runtime.ledger.verify()
    assert not rep.ok and rep.first_bad == 7 and "altered" in rep.problem


def test_forged_checkpoint_signature(runtime: Context) -> None:
    """A checkpoint signed by another key is reported as forged."""
    from control_plane.crypto import SM2PrivateKey
    from control_plane.audit.models import checkpoint_payload

    runtime.ledger.checkpoint_every = 5
    _fill(runtime, 10)
    other = SM2PrivateKey.generate()
    with runtime.engine.begin() as c:
        row = c.execute(text("SELECT seq, head_hash, ts FROM audit_checkpoints WHERE seq = 10")).one()
        sig = other.sign(checkpoint_payload(row.seq, row.head_hash, row.ts)).hex()
        c.execute(text("UPDATE audit_checkpoints SET signature = :s, public_key = :p WHERE seq = 10"),
                  {"s": sig, "p": other.public_key.to_hex()})  # fmt: skip
    rep = runtime.ledger.verify()
    assert not rep.ok and rep.first_bad == 6
    assert any("forged" in p for p in [rep.problem, *rep.notes]), rep


def test_query_filters(runtime: Context) -> None:
    """Filters by actor, operation prefix, target and time window."""
    _fill(runtime, 9)
    assert {r.actor for r in runtime.ledger.query(actor="user1")} == {"user1"}
    assert len(runtime.ledger.query(actor="user1")) == 3
    assert {r.operation for r in runtime.ledger.query(operation="deploy.*")} == {"deploy.up"}
    assert len(runtime.ledger.query(target="pool-0")) == 5
    mid = runtime.ledger.query(newest_first=False)[4].ts
    assert [r.seq for r in runtime.ledger.query(since=mid, newest_first=False)] == [5, 6, 7, 8, 9]
    assert [r.seq for r in runtime.ledger.query(until=mid, newest_first=False)] == [1, 2, 3, 4]
