"""Property tests: any single edit, deletion, insertion, reordering or tail truncation is pinpointed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from control_plane.audit import AuditEvent, Ledger
from control_plane.audit.models import HASHED_FIELDS, record_hash
from control_plane.crypto import SM2PrivateKey
from control_plane.db import make_engine, upgrade

SIGNER = SM2PrivateKey.generate()
COLS = ", ".join((*HASHED_FIELDS, "prev_hash", "hash"))


def _ledger(tmp: Path, n: int, every: int) -> Ledger:
    eng = make_engine(f"sqlite:///{tmp / 'state.db'}")
    upgrade(eng)
    led = Ledger(eng, SIGNER, anchor_file=tmp / "anchor.jsonl", checkpoint_every=every)
    for i in range(n):
        led.append(AuditEvent(actor=f"a{i % 4}", operation="op", target=f"t{i}", params={"i": i}))
    return led


def _row(c, seq: int) -> dict:  # noqa: ANN001
    return dict(c.execute(text(f"SELECT {COLS} FROM audit_records WHERE seq = :s"), {"s": seq}).one()._mapping)


def _put(c, row: dict) -> None:  # noqa: ANN001
    sets = ", ".join(f"{k} = :{k}" for k in row if k != "seq")
    c.execute(text(f"UPDATE audit_records SET {sets} WHERE seq = :seq"), row)


def tamper(led: Ledger, kind: str, i: int, n: int) -> None:
    """Apply one kind of tampering at position i of an n-record chain."""
    with led.engine.begin() as c:
        if kind == "edit":
            c.execute(text("UPDATE audit_records SET actor = 'mallory' WHERE seq = :s"), {"s": i})
        elif kind == "edit_rehash":
            row = _row(c, i)
            row["actor"] = "mallory"
            row["hash"] = record_hash(row["prev_hash"], row)
            _put(c, row)
        elif kind == "delete":
            c.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": i})
        elif kind == "insert":
            for s in range(n, i - 1, -1):
                c.execute(text("UPDATE audit_records SET seq = seq + 1 WHERE seq = :s"), {"s": s})
            prev = _row(c, i - 1)["hash"] if i > 1 else "0" * 64
            forged = dict(_row(c, i + 1))
            forged.update(seq=i, actor="mallory", target="forged", prev_hash=prev)
            forged["hash"] = record_hash(prev, forged)
            c.execute(text(f"INSERT INTO audit_records ({COLS}) VALUES ({', '.join(':' + k for k in forged)})"), forged)
        elif kind == "swap":
            a, b = _row(c, i), _row(c, i + 1)
            a_seq, b_seq = a["seq"], b["seq"]
            a["seq"], b["seq"] = b_seq, a_seq
            _put(c, a)
            _put(c, b)
        else:
            raise AssertionError(kind)


def expected_first_bad(kind: str, i: int) -> int:
    """Where verify must point for each kind of tampering."""
    return i


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_single_tamper_is_pinpointed(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """For a random chain and a random tampering, verify names exactly the first bad record."""
    n = data.draw(st.integers(min_value=3, max_value=30), label="records")
    kind = data.draw(st.sampled_from(["edit", "edit_rehash", "delete", "insert", "swap"]), label="kind")
    hi = n if kind in ("edit", "insert") else n - 1  # rehash/delete/swap of the very last record need a checkpoint
    i = data.draw(st.integers(min_value=1 if kind != "insert" else 2, max_value=hi), label="position")
    led = _ledger(tmp_path_factory.mktemp("tamper"), n, every=1000)
    assert led.verify().ok
    tamper(led, kind, i, n)
    rep = led.verify()
    assert not rep.ok, f"{kind} at {i} of {n} went unnoticed"
    assert rep.first_bad == expected_first_bad(kind, i), (kind, i, n, rep.problem)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=6, max_value=30), data=st.data())
def test_tail_truncation_past_checkpoint(tmp_path_factory: pytest.TempPathFactory, n: int, data: st.DataObject) -> None:
    """Deleting the newest records past a checkpoint is found, even with the checkpoint rows deleted too."""
    led = _ledger(tmp_path_factory.mktemp("trunc"), n, every=5)
    cp_max = (n // 5) * 5
    keep = data.draw(st.integers(min_value=0, max_value=cp_max - 1), label="keep")
    also_checkpoints = data.draw(st.booleans(), label="delete checkpoint rows too")
    with led.engine.begin() as c:
        c.execute(text("DELETE FROM audit_records WHERE seq > :k"), {"k": keep})
        if also_checkpoints:
            c.execute(text("DELETE FROM audit_checkpoints WHERE seq > :k"), {"k": keep})
    rep = led.verify()
    assert not rep.ok and rep.first_bad == keep + 1, rep.problem
    assert "truncated" in rep.problem


def test_rewritten_suffix_caught_by_checkpoint(tmp_path: Path) -> None:
    """Re-chaining everything after an edit passes the hash walk but not the signed checkpoint."""
    led = _ledger(tmp_path, 20, every=10)
    with led.engine.begin() as c:
        prev = _row(c, 12)["prev_hash"]
        for s in range(12, 21):
            row = _row(c, s)
            if s == 12:
                row["actor"] = "mallory"
            row["prev_hash"] = prev
            row["hash"] = record_hash(prev, row)
            _put(c, row)
            prev = row["hash"]
    rep = led.verify()
    assert not rep.ok and rep.first_bad == 11 and "rewritten" in rep.problem


def test_anchor_file_disagreeing_with_db(tmp_path: Path) -> None:
    """A checkpoint row changed in the DB no longer matches its anchored copy."""
    led = _ledger(tmp_path, 10, every=5)
    with led.engine.begin() as c:
        c.execute(text("UPDATE audit_checkpoints SET ts = '2000-01-01T00:00:00.000000Z' WHERE seq = 10"))
    rep = led.verify()
    assert not rep.ok and "anchored copy" in rep.problem


@pytest.mark.parametrize("kind", ["backup-pool file", "write-once store"])
def test_an_off_host_copy_catches_deletion_of_db_rows_and_local_anchor(tmp_path: Path, kind: str) -> None:
    """With the newest records, their checkpoint rows and the local anchor file all deleted, the backup pool's copy (or the S3-style store,
    one object per checkpoint) still tells."""
    from control_plane.objects import LocalBackend

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(eng)
    backup_copy = tmp_path / "backup-pool" / "bucket" / "audit" / "checkpoints.jsonl"
    st = LocalBackend(tmp_path / "bucket")
    extra = {"extra_anchors": lambda: [backup_copy]} if kind == "backup-pool file" else {"stores": lambda: [st]}
    led = Ledger(eng, SIGNER, anchor_file=tmp_path / "anchor.jsonl", checkpoint_every=5, **extra)  # type: ignore[arg-type]
    for i in range(12):
        led.append(AuditEvent(actor="a", operation="op", params={"i": i}))
    if kind == "backup-pool file":
        assert [l.split(",")[0] for l in backup_copy.read_text().splitlines()] == ['{"seq":5', '{"seq":10']
    else:
        assert st.list("checkpoints/") == ["checkpoints/000000000005.json", "checkpoints/000000000010.json"]
    assert led.verify().anchors == 2
    with led.engine.begin() as c:
        c.execute(text("DELETE FROM audit_records WHERE seq > 7"))
        c.execute(text("DELETE FROM audit_checkpoints WHERE seq > 7"))
    (tmp_path / "anchor.jsonl").unlink()
    rep = led.verify()
    assert not rep.ok and rep.first_bad == 8 and "truncated" in rep.problem


def test_anchor_copies_that_disagree(tmp_path: Path) -> None:
    """Two anchor copies with different content for one checkpoint are reported."""
    from control_plane.audit import AuditError

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(eng)
    copy = tmp_path / "copy.jsonl"
    led = Ledger(eng, SIGNER, anchor_file=tmp_path / "anchor.jsonl", checkpoint_every=5, extra_anchors=lambda: [copy])
    for i in range(5):
        led.append(AuditEvent(actor="a", operation="op", params={"i": i}))
    copy.write_text(copy.read_text().replace('"seq":5,"head_hash":"', '"seq":5,"head_hash":"00'))
    with pytest.raises(AuditError, match="differs between"):
        led.verify()


def test_a_store_object_altered_or_renamed_is_an_error_and_an_unreachable_store_a_note(tmp_path: Path) -> None:
    """An object whose checkpoint differs from the DB's, or that sits under another checkpoint's name, fails verify; a store that cannot be read is said, not fatal."""
    from control_plane.audit import AuditError
    from control_plane.objects import LocalBackend

    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(eng)
    st = LocalBackend(tmp_path / "bucket")
    stores = [st]
    led = Ledger(eng, SIGNER, anchor_file=tmp_path / "anchor.jsonl", checkpoint_every=5, stores=lambda: stores)
    for i in range(10):
        led.append(AuditEvent(actor="a", operation="op", params={"i": i}))
    five, ten = st.path("checkpoints/000000000005.json"), st.path("checkpoints/000000000010.json")
    original = ten.read_bytes()
    ten.write_bytes(five.read_bytes())  # checkpoint 5 copied over checkpoint 10's object
    with pytest.raises(AuditError, match="another checkpoint than its name"):
        led.verify()
    ten.write_bytes(original.replace(b'"head_hash":"', b'"head_hash":"00'))
    with pytest.raises(AuditError, match="differs between"):
        led.verify()
    ten.write_bytes(original)
    assert led.verify().ok

    import socket

    from control_plane.objects import S3Backend

    with socket.socket() as sock:  # a port nothing listens on: the object store is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stores.append(S3Backend(f"http://127.0.0.1:{port}", "govctl-audit", "key", "secret", attempts=1, timeout_s=2))  # type: ignore[arg-type]
    rep = led.verify()
    assert rep.ok and any("s3://govctl-audit could not be read" in n for n in rep.notes), rep.notes
