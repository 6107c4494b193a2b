"""The audit ledger: append-only, SM3-chained records with SM2-signed checkpoints.

Every record carries the SM3 hash of its predecessor; every ``checkpoint_every`` records (and
on a timer) the chain head is signed with the platform SM2 key. Checkpoints are stored in the
state DB and appended to an anchor file off the DB, so deleting the newest records *and* their
checkpoint rows is still detected. Appends from many processes serialise on the database's own
write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction advisory lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from sqlalchemy import Engine, and_, func, insert, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from control_plane import clock, metrics
from control_plane.audit.models import (
    GENESIS,
    HASHED_FIELDS,
    AuditEvent,
    AuditRecord,
    canonical_json,
    checkpoint_payload,
    checkpoints,
    external_anchors,
    params_digest,
    record_hash,
    records,
    rotation_statement,
)
from control_plane.crypto import InvalidSignature, KeyFormatError, SM2PrivateKey, SM2PublicKey
from control_plane.db import is_sqlite, write_tx
from control_plane.errors import GovctlError

log = logging.getLogger("govctl.audit")
_APPEND_LOCK_KEY = 0x676F7663746C0002
# Built once: constructing statements per call costs more than the durable commit itself.
_HEAD = select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1)
_INSERT_RECORD = insert(records)
_INSERT_CHECKPOINT = insert(checkpoints)
_PG_APPEND_LOCK = text("SELECT pg_advisory_xact_lock(%d)" % _APPEND_LOCK_KEY)


ANCHOR_PREFIX = "checkpoints/"


class AnchorStore(Protocol):
    """Write-once object storage (``control_plane.objects``): an S3 bucket in the cluster profile."""

    def write_once(self, name: str, data: bytes) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def read(self, name: str) -> bytes: ...


def _anchor_name(seq: int) -> str:
    return f"{ANCHOR_PREFIX}{seq:012d}.json"


def _store_name(store: AnchorStore) -> str:
    bucket = getattr(store, "bucket", None)
    return f"s3://{bucket}" if bucket else str(getattr(store, "root", store))


class AuditError(GovctlError):
    """Root of the audit package's errors."""

    http_status = 409
    exit_code = 1


utc_now_iso = clock.now_iso  # the stored form: fixed-width UTC with microseconds (sorts as time sorts)


@dataclass
class VerifyReport:
    """The outcome of ``Ledger.verify``: ok, or the first bad record and why."""

    ok: bool
    records: int
    checkpoints: int
    anchors: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None
    problem: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    trusted_key: str = ""  # the key id the chain of keys starts from
    pinned: bool = False  # whether that key was pinned by the caller (else: the first checkpoint's key, taken on trust)
    keys: list[str] = field(default_factory=list)  # every key id the ledger was signed with, in order (rotations)
    external_anchor: dict[str, Any] | None = None  # the newest anchor held outside this host (a province receipt)
    records_after_external_anchor: int | None = None  # records nobody outside this host has vouched for yet

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        return dict(self.__dict__)


class Ledger:
    """Append, checkpoint, verify and query the audit chain in one state database."""

    def __init__(
        self,
        engine: Engine,
        signer: SM2PrivateKey,
        *,
        anchor_file: Path | None = None,
        checkpoint_every: int = 100,
        extra_anchors: Callable[[], list[Path]] | None = None,
        write_once: Callable[[], list[Path]] | None = None,
        stores: Callable[[], list[AnchorStore]] | None = None,
    ) -> None:
        self.engine = engine
        self.write_once = write_once or (lambda: [])
        # write-once object stores (an S3 bucket in the cluster profile): one object per checkpoint, read back by verify
        self.stores = stores or (lambda: [])
        self.signer = signer
        self.anchor_file = Path(anchor_file) if anchor_file else None
        # further copies off the state DB, e.g. on the backup pool; looked up at each checkpoint
        self.extra_anchors = extra_anchors or (lambda: [])
        self.checkpoint_every = checkpoint_every
        self._anchor_lock = threading.Lock()

    def close(self) -> dict[str, Any] | None:
        """Sign the head at exit, so records written since the last checkpoint cannot vanish unnoticed."""
        try:
            return self.checkpoint()
        except Exception as exc:  # noqa: BLE001 - at exit, say why and go on
            log.info("final checkpoint not written (%s); the next process's checkpoint covers these records", type(exc).__name__)
            return None

    # -- writing -----------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditRecord:
        """Append one record to the chain (durably committed) and return it."""
        details = canonical_json(event.details or {})
        digest = params_digest(event.params)
        with write_tx(self.engine) as conn:
            if not is_sqlite(conn):
                conn.execute(_PG_APPEND_LOCK)
            head = conn.execute(_HEAD).first()
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            row = {
                "seq": seq,
                "ts": utc_now_iso(),
                "actor": event.actor,
                "role": event.role,
                "source": event.source,
                "operation": event.operation,
                "target": event.target,
                "params_digest": digest,
                "decision": event.decision,
                "outcome": event.outcome,
                "request_id": event.request_id,
                "details": details,
            }
            row["prev_hash"] = prev
            row["hash"] = record_hash(prev, row)
            conn.execute(_INSERT_RECORD, row)
        rec = AuditRecord(**row)
        metrics.AUDIT_APPENDS.inc()
        if seq % self.checkpoint_every == 0:
            self._checkpoint_at(seq, rec.hash)
        return rec

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current head if no checkpoint covers it yet; return the checkpoint or None."""
        with self.engine.connect() as conn:
            head = conn.execute(_HEAD).first()
            last = conn.execute(select(func.max(checkpoints.c.seq))).scalar()
        if head is None or (last is not None and last >= head[0]):
            return None
        return self._checkpoint_at(head[0], head[1])

    def _checkpoint_at(self, seq: int, head_hash: str) -> dict[str, Any] | None:
        ts = utc_now_iso()
        pub = self.signer.public_key
        cp = {
            "seq": seq,
            "head_hash": head_hash,
            "ts": ts,
            "key_id": pub.key_id,
            "public_key": pub.to_hex(),
            "signature": self.signer.sign(checkpoint_payload(seq, head_hash, ts)).hex(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_CHECKPOINT, cp)
        except SAIntegrityError:
            return None  # another process signed this head first
        self._anchor(cp)
        return cp

    def anchors(self) -> list[Path]:
        """Every place checkpoints are appended to, off the state DB."""
        return [p for p in [self.anchor_file, *self.extra_anchors()] if p is not None]

    def write_once_dirs(self) -> list[Path]:
        """Directories that keep each checkpoint as its own write-once file (the backup repository's anchors)."""
        return list(self.write_once())

    # -- keys and external anchors -----------------------------------------------------------

    def rotate(self, new_key: SM2PrivateKey, *, actor: str) -> dict[str, Any]:
        """Hand the ledger to a new key: the old key signs the statement, it is recorded and checkpointed, then the new key signs."""
        old = self.signer
        ts = utc_now_iso()
        statement = rotation_statement(old.public_key.key_id, new_key.public_key.to_hex(), ts)
        rec = self.append(AuditEvent(actor=actor, role="secadmin", source="local", operation="keys.rotated", target="platform",
                                     outcome="succeeded", details={"old_key_id": old.public_key.key_id, "new_key_id": new_key.public_key.key_id,
                                                                   "new_public_key": new_key.public_key.to_hex(), "ts": ts,
                                                                   "signature": old.sign(statement).hex()}))  # fmt: skip
        self._checkpoint_at(rec.seq, rec.hash)  # the hand-over itself is signed by the old key
        self.signer = new_key
        return {"seq": rec.seq, "old_key_id": old.public_key.key_id, "new_key_id": new_key.public_key.key_id}

    def add_external_anchor(self, anchor_id: str, seq: int, head_hash: str, kind: str, evidence: dict[str, Any]) -> None:
        """Record that someone outside this host (the province, in a signed receipt) holds the head ``seq``/``head_hash``."""
        with self.engine.begin() as conn:
            if conn.execute(select(external_anchors.c.id).where(external_anchors.c.id == anchor_id)).first() is None:
                conn.execute(external_anchors.insert().values(id=anchor_id, seq=seq, head_hash=head_hash, kind=kind, ts=utc_now_iso(),
                                                              evidence=json.dumps(evidence, ensure_ascii=False, sort_keys=True)))  # fmt: skip

    def signed_head(self) -> dict[str, Any]:
        """A checkpoint of the current head (made now if needed), for a document that leaves this host."""
        self.checkpoint()
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).order_by(checkpoints.c.seq.desc()).limit(1)).first()
        if row is None:
            return {"seq": 0, "head_hash": GENESIS, "key_id": self.signer.public_key.key_id}
        return {k: row._mapping[k] for k in ("seq", "head_hash", "ts", "key_id", "signature")}

    def _anchor(self, cp: dict[str, Any]) -> None:
        line = json.dumps(cp, separators=(",", ":")) + "\n"
        for d in self.write_once_dirs():  # one file per checkpoint, created once and never rewritten
            try:
                d.mkdir(parents=True, exist_ok=True)
                fd = os.open(d / f"checkpoint-{cp['seq']:012d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
            except FileExistsError:
                pass
            except OSError as exc:
                log.warning("could not write checkpoint %s once into %s: %s", cp["seq"], d, exc)
        for store in self.stores():
            try:
                store.write_once(_anchor_name(cp["seq"]), line.encode())
            except Exception as exc:  # noqa: BLE001 - an unreachable store must not stop the others; verify counts what it holds
                log.warning("could not write checkpoint %s once to %s: %s", cp["seq"], _store_name(store), exc)
        for path in self.anchors():
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # 0600 from its creation
                with self._anchor_lock, os.fdopen(fd, "a", encoding="utf-8") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
                    fcntl.flock(fh, fcntl.LOCK_UN)
            except OSError as exc:  # one unreachable copy must not stop the others (verify reports gaps)
                log.warning("could not copy checkpoint %s to %s: %s", cp["seq"], path, exc)

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record; (0, GENESIS) when empty."""
        with self.engine.connect() as conn:
            head = conn.execute(_HEAD).first()
        return (head[0], head[1]) if head else (0, GENESIS)

    def query(
        self,
        *,
        actor: str | None = None,
        operation: str | None = None,
        target: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after_seq: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditRecord]:
        """Records filtered by actor, operation (``prefix*`` allowed), target, outcome and time."""
        conds = []
        if actor:
            conds.append(records.c.actor == actor)
        if operation:
            conds.append(records.c.operation.like(operation[:-1] + "%") if operation.endswith("*") else records.c.operation == operation)
        if target:
            conds.append(records.c.target == target)
        if outcome:
            conds.append(records.c.outcome == outcome)
        if since:
            conds.append(records.c.ts >= since)
        if until:
            conds.append(records.c.ts < until)
        if after_seq is not None:
            conds.append(records.c.seq > after_seq)
        order = records.c.seq.desc() if newest_first else records.c.seq.asc()
        stmt = select(records).where(and_(True, *conds)).order_by(order).limit(limit)
        with self.engine.connect() as conn:
            return [AuditRecord(**r._mapping) for r in conn.execute(stmt)]

    def iter_records(self, after_seq: int = 0, batch: int = 5000) -> Iterator[AuditRecord]:
        """All records after ``after_seq`` in chain order, fetched in batches."""
        while True:
            got = self.query(after_seq=after_seq, limit=batch, newest_first=False)
            yield from got
            if len(got) < batch:
                return
            after_seq = got[-1].seq

    # -- verification --------------------------------------------------------------------------

    def verify(self, trusted: SM2PublicKey | None = None, *, pin: str | None = None) -> VerifyReport:
        """Prove the chain and every checkpoint; pinpoint the first bad record if any.

        The keys come from the ledger itself, never from the key file on disk: the first key is
        ``pin`` (a key id the auditor holds, as printed at first start and in every monthly
        report) or ``trusted``, or else the first checkpoint's key (reported as not pinned), and
        each later key must be introduced by a ``keys.rotated`` record the previous key signed.
        """
        started = time.perf_counter()
        with self.engine.connect() as conn:
            db_cps = {r.seq: dict(r._mapping) for r in conn.execute(select(checkpoints).order_by(checkpoints.c.seq))}
            rotations = [(r.seq, json.loads(r.details)) for r in conn.execute(
                select(records.c.seq, records.c.details).where(records.c.operation == "keys.rotated").order_by(records.c.seq))]  # fmt: skip
            ext = conn.execute(select(external_anchors).order_by(external_anchors.c.seq.desc())).all()
        notes: list[str] = []
        anchors = self._read_anchors(notes)
        first_cp = (db_cps.get(min(db_cps)) if db_cps else None) or (anchors.get(min(anchors)) if anchors else None)
        pinned = bool(pin or trusted)
        root = trusted or (SM2PublicKey.from_hex(first_cp["public_key"]) if first_cp else self.signer.public_key)
        timeline, key_problem = _key_timeline(root, rotations)
        if pin and root.key_id != pin:
            key_problem = (1, f"the ledger is signed by key {root.key_id}, not the pinned key {pin}: the history was re-signed")
        cp_seqs = set(db_cps) | set(anchors)
        at_cp: dict[int, str] = {}

        cols = ", ".join((*HASHED_FIELDS, "prev_hash", "hash"))
        expected, prev, prev2 = 1, GENESIS, GENESIS
        first_bad: int | None = None
        problem: str | None = None
        n = 0
        sm3_algo = hashes.SM3()
        encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        new_hash, fromhex = hashes.Hash, bytes.fromhex
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).exec_driver_sql(
                f"SELECT {cols} FROM audit_records ORDER BY seq"
            )
            for row in _rows(result):
                seq = row[0]
                if seq != expected:
                    first_bad, problem = expected, (
                        f"record {expected} is missing (deleted)" if seq == expected + 1
                        else f"records {expected}..{seq - 1} are missing (deleted)"
                    )  # fmt: skip
                    break
                stored_prev, stored_hash = row[12], row[13]
                h = new_hash(sm3_algo)
                h.update(fromhex(stored_prev))
                h.update(encode(list(row[:12])).encode())
                self_ok = h.finalize().hex() == stored_hash
                if self_ok and stored_prev == prev:
                    n += 1
                    prev2, prev = prev, stored_hash
                    if seq in cp_seqs:
                        at_cp[seq] = stored_hash
                    expected += 1
                    continue
                if not self_ok:
                    shifted = dict(zip(HASHED_FIELDS, row[:12]))
                    shifted["seq"] = seq - 1
                    if seq > 1 and stored_prev == prev2 and record_hash(stored_prev, shifted) == stored_hash:
                        first_bad, problem = seq - 1, (
                            f"record {seq - 1} was inserted: record {seq} is the former record {seq - 1}, renumbered"
                        )
                    else:
                        first_bad, problem = seq, f"record {seq} was altered: its content does not match its hash"
                else:
                    first_bad, problem = seq - 1, (
                        f"record {seq - 1} was altered and re-hashed: record {seq} links to a different predecessor"
                    )
                break

        head_seq, head_hash = expected - 1, prev
        cp_problem = self._check_checkpoints(db_cps, anchors, at_cp, head_seq, timeline, first_bad, notes)
        for extra in (key_problem, cp_problem):
            if extra and (first_bad is None or extra[0] <= first_bad):
                if problem:
                    notes.append(f"also: {problem}")
                first_bad, problem = extra
            elif extra:
                notes.append(f"also: {extra[1]}")
        newest_ext = None
        after_ext = None
        for a in ext:  # the newest anchor held outside whose head is still in the chain as it was
            if a.seq <= head_seq and (a.seq in at_cp and at_cp[a.seq] == a.head_hash or self._hash_at(a.seq) == a.head_hash):
                newest_ext = {"id": a.id, "seq": a.seq, "kind": a.kind, "ts": a.ts}
                after_ext = head_seq - a.seq
                break
            if a.seq <= head_seq and (first_bad is None or a.seq < first_bad):
                first_bad, problem = a.seq, f"record {a.seq} differs from the head the province holds in {a.id}: the history was rewritten"
                break
        if not pinned:
            notes.append(f"the verifying key {root.key_id} was taken from the ledger's first checkpoint; pass --pin KEY_ID to check it")
        return VerifyReport(
            ok=first_bad is None,
            records=n,
            checkpoints=len(db_cps),
            anchors=len(anchors),
            head_seq=head_seq,
            head_hash=head_hash,
            first_bad=first_bad,
            problem=problem,
            seconds=round(time.perf_counter() - started, 4),
            notes=notes,
            trusted_key=root.key_id,
            pinned=pinned,
            keys=[k.key_id for _, k in timeline],
            external_anchor=newest_ext,
            records_after_external_anchor=after_ext if newest_ext else head_seq,
        )

    def _hash_at(self, seq: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(records.c.hash).where(records.c.seq == seq)).scalar()

    def _read_anchors(self, notes: list[str]) -> dict[int, dict[str, Any]]:
        """Checkpoints from every anchor copy and store; copies that disagree on a checkpoint are an error."""
        out: dict[int, dict[str, Any]] = {}
        where: dict[int, str] = {}

        def take(cp_line: str, place: str) -> int:
            try:
                cp = json.loads(cp_line)
                seq = int(cp["seq"])
            except (ValueError, KeyError, TypeError):
                raise AuditError(f"{place}: not a checkpoint record", hint="the anchor copy was altered") from None
            if seq in out and _cp_core(out[seq]) != _cp_core(cp):
                raise AuditError(f"checkpoint {seq} differs between {where[seq]} and {place}", hint="one anchor copy was altered")
            out[seq], where[seq] = cp, place
            return seq

        for path in self.anchors():
            if not path.exists():
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    take(line, f"{path}:{i}")
        for store in self.stores():
            name = _store_name(store)
            try:
                names = [n for n in store.list(ANCHOR_PREFIX) if n.endswith(".json")]
                with ThreadPoolExecutor(max_workers=8) as pool:  # one GET per checkpoint: a year is thousands of them
                    bodies = list(pool.map(store.read, names))
            except Exception as exc:  # noqa: BLE001 - say so; the other copies still count
                notes.append(f"the anchor store {name} could not be read ({type(exc).__name__}: {str(exc)[:120]}); its checkpoints were not compared")
                continue
            for n, body in zip(names, bodies):
                if n != _anchor_name(take(body.decode("utf-8", "replace"), f"{name}/{n}")):
                    raise AuditError(f"{name}/{n} holds another checkpoint than its name says", hint="an anchor object was copied over another")
        return out

    def _check_checkpoints(
        self,
        db_cps: dict[int, dict[str, Any]],
        anchors: dict[int, dict[str, Any]],
        at_cp: dict[int, str],
        head_seq: int,
        timeline: list[tuple[int, SM2PublicKey]],
        first_bad: int | None,
        notes: list[str],
    ) -> tuple[int, str] | None:
        problems: list[tuple[int, str]] = []
        prev_cp = 0
        for seq in sorted(set(db_cps) | set(anchors)):
            cp = db_cps.get(seq) or anchors[seq]
            if seq in db_cps and seq in anchors and _cp_core(db_cps[seq]) != _cp_core(anchors[seq]):
                problems.append((prev_cp + 1, f"checkpoint {seq} in the database differs from the anchored copy"))
            try:
                pub = SM2PublicKey.from_hex(cp["public_key"])
                trusted = _key_for(timeline, seq)
                if pub != trusted:
                    raise InvalidSignature(f"signed by key {pub.key_id}, not the platform key {trusted.key_id} of that time")
                pub.verify(checkpoint_payload(seq, cp["head_hash"], cp["ts"]), bytes.fromhex(cp["signature"]))
            except (InvalidSignature, KeyFormatError, ValueError) as exc:
                problems.append((prev_cp + 1, f"checkpoint {seq} is forged or damaged: {getattr(exc, 'message', exc)}"))
            if first_bad is not None and seq >= first_bad:
                prev_cp = seq
                continue
            if seq > head_seq:
                problems.append((head_seq + 1, f"records {head_seq + 1}..{seq} are missing: checkpoint {seq} signed them (tail truncated)"))
            elif at_cp.get(seq) != cp["head_hash"]:
                problems.append((prev_cp + 1, f"records {prev_cp + 1}..{seq} were rewritten: checkpoint {seq} signed a different head"))
            if seq not in db_cps:
                notes.append(f"checkpoint {seq} exists only in the anchor file (deleted from the database)")
            prev_cp = seq
        notes.extend(f"also: {p[1]}" for p in sorted(problems)[1:])
        return min(problems) if problems else None


def _key_timeline(root: SM2PublicKey, rotations: list[tuple[int, dict[str, Any]]]) -> tuple[list[tuple[int, SM2PublicKey]], tuple[int, str] | None]:
    """[(from seq, key)]: the root key, then each key a rotation record introduced with the previous key's signature."""
    timeline: list[tuple[int, SM2PublicKey]] = [(0, root)]
    for seq, d in rotations:
        cur = timeline[-1][1]
        try:
            new = SM2PublicKey.from_hex(d["new_public_key"])
            if d.get("old_key_id") != cur.key_id:
                raise InvalidSignature(f"it hands over from {d.get('old_key_id')}, but {cur.key_id} was the key then")
            cur.verify(rotation_statement(cur.key_id, d["new_public_key"], d["ts"]), bytes.fromhex(d["signature"]))
        except (InvalidSignature, KeyFormatError, ValueError, KeyError) as exc:
            return timeline, (seq, f"key rotation at record {seq} is not signed by the previous key: {getattr(exc, 'message', exc)}")
        timeline.append((seq, new))
    return timeline, None


def _key_for(timeline: list[tuple[int, SM2PublicKey]], seq: int) -> SM2PublicKey:
    """The key that signs checkpoints of ``seq``: a rotation at r is itself checkpointed by the old key."""
    key = timeline[0][1]
    for start, k in timeline[1:]:
        if seq > start:
            key = k
    return key


def _rows(result: Any, size: int = 5000) -> Iterator[tuple[Any, ...]]:
    while True:
        batch = result.fetchmany(size)
        if not batch:
            return
        yield from batch


def _cp_core(cp: dict[str, Any]) -> tuple[Any, ...]:
    return (int(cp["seq"]), cp["head_hash"], cp["ts"], cp["signature"])
