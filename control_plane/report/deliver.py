"""Delivering a report to the province: an outbox in the state DB, so a restart loses nothing.

``enqueue`` seals the signed report once (the sealed file is kept beside the report, so every
retry sends the same bytes) and records a delivery with an idempotency key derived from the
month, revision and digest: the province sees one submission however often it is sent.
``attempt`` POSTs it; a 2xx answer carries a receipt signed by the province, which is verified
and stored. Connection errors, timeouts, 408/429 and 5xx are retried with doubling delays
(``report.retry_initial_s`` … ``retry_max_s``); any other 4xx is a rejection that needs a new
revision, and is never retried blindly.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Column, Integer, String, Table, Text, and_, select

from control_plane import clock
from control_plane.errors import ConfigError
from control_plane.crypto import InvalidSignature, SM2PublicKey, sm3_hex
from control_plane.report.seal import canonical, seal, verify
from control_plane.report.store import Built, ReportError
from control_plane.db import metadata

if TYPE_CHECKING:
    from control_plane.context import Context

meta = metadata
deliveries = Table(
    "report_deliveries", meta,
    Column("id", String(32), primary_key=True), Column("month", String(7), nullable=False), Column("revision", Integer, nullable=False),
    Column("idempotency_key", String(64), nullable=False, unique=True), Column("endpoint", Text, nullable=False),
    Column("status", String(16), nullable=False), Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", String(32), nullable=False), Column("last_error", Text), Column("receipt", Text),
    Column("created", String(32), nullable=False), Column("updated", String(32), nullable=False),
)  # fmt: skip


_now = clock.now
_iso = clock.iso


def province_key(rt: Context) -> SM2PublicKey:
    """The province's SM2 public key the report is sealed for; without one configured nothing is submitted."""
    p = rt.settings.report.province_public_key
    if p is None:
        raise ConfigError("report.province_public_key is not set: there is no province key to seal the report for",
                          hint="set report.province_public_key to the province's SM2 public key (PEM) and report.endpoint to its URL")  # fmt: skip
    path = rt.settings.path(p)
    if not path.exists():
        raise ConfigError(f"the province's public key {path} does not exist", hint="set report.province_public_key to their PEM file")
    return SM2PublicKey.from_pem(path.read_text())


def idempotency_key(b: Built) -> str:
    """The same report revision always gets the same key."""
    return sm3_hex(f"govctl-report|{b.month}|{b.revision}|{b.digest_sm3}".encode())[:40]


def sealed_payload(rt: Context, b: Built) -> dict[str, Any]:
    """The sealed submission for a revision, made once and kept (retries send identical bytes)."""
    f = b.path.parent / f"r{b.revision}.sealed.json"
    if f.exists():
        return json.loads(f.read_text())
    data = (b.path / "report.json").read_bytes()
    sig = json.loads((b.path / "report.sig.json").read_text())
    submission = {"report": base64.b64encode(data).decode(), "signature": sig}
    env = seal(canonical(submission), province_key(rt), {"month": b.month, "revision": b.revision, "idempotency_key": idempotency_key(b)})
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(env))
    tmp.replace(f)
    return env


def enqueue(rt: Context, b: Built) -> dict[str, Any]:
    """Put a revision in the outbox (once); returns the delivery."""
    key = idempotency_key(b)
    sealed_payload(rt, b)
    now = _iso(_now())
    with rt.engine.begin() as c:
        row = c.execute(select(deliveries).where(deliveries.c.idempotency_key == key)).first()
        if row is None:
            c.execute(deliveries.insert().values(id=uuid.uuid4().hex[:16], month=b.month, revision=b.revision, idempotency_key=key,
                                                 endpoint=rt.settings.report.endpoint_url, status="pending", attempts=0, next_attempt=now,
                                                 created=now, updated=now))  # fmt: skip
    return get(rt, key)


def get(rt: Context, key: str) -> dict[str, Any]:
    """A delivery by idempotency key or id."""
    with rt.engine.connect() as c:
        row = c.execute(select(deliveries).where((deliveries.c.idempotency_key == key) | (deliveries.c.id == key))).first()
    if row is None:
        raise ReportError(f"no delivery {key!r}")
    d = dict(row._mapping)
    d["receipt"] = json.loads(d["receipt"]) if d["receipt"] else None
    return d


def list_deliveries(rt: Context, month: str | None = None) -> list[dict[str, Any]]:
    """Deliveries, newest first."""
    q = select(deliveries).order_by(deliveries.c.created.desc())
    if month:
        q = q.where(deliveries.c.month == month)
    with rt.engine.connect() as c:
        return [{**dict(r._mapping), "receipt": json.loads(r.receipt) if r.receipt else None} for r in c.execute(q)]


def _update(rt: Context, key: str, **vals: Any) -> None:
    with rt.engine.begin() as c:
        c.execute(deliveries.update().where(deliveries.c.idempotency_key == key).values(updated=_iso(_now()), **vals))


def _anchor_receipt(rt: Context, b: Any, receipt: dict[str, Any]) -> None:
    """The province's signed receipt for a report that carries the ledger head is an anchor outside this host."""
    from control_plane.report.store import load

    head = load(b).get("audit") or {}
    if head.get("head_seq"):
        rt.ledger.add_external_anchor(f"province-receipt:{b.month}:r{b.revision}", int(head["head_seq"]), head["head_hash"], "province_receipt",
                                      {"month": b.month, "revision": b.revision, "report_sm3": b.digest_sm3, "receipt": receipt})  # fmt: skip


def verify_receipt(receipt: dict[str, Any], key: str, digest: str, province: SM2PublicKey) -> None:
    """The receipt must be the province's signature over this submission."""
    body = receipt.get("receipt") or {}
    if body.get("idempotency_key") != key or body.get("digest_sm3") != digest:
        raise InvalidSignature("the receipt is for a different submission")
    verify(canonical(body), receipt.get("signature") or {}, province)


def attempt(rt: Context, d: dict[str, Any], *, client: httpx.Client | None = None) -> dict[str, Any]:
    """One delivery attempt; returns the updated delivery."""
    from control_plane import metrics
    from control_plane.report.store import get as get_rev

    cfg = rt.settings.report
    key = d["idempotency_key"]
    b = get_rev(rt, d["month"], d["revision"])
    env = sealed_payload(rt, b)
    attempts = d["attempts"] + 1
    error = None
    retry = True
    try:
        with client or httpx.Client(timeout=cfg.timeout_s) as http:
            r = http.post(d["endpoint"], json=env, headers={"Idempotency-Key": key})
        if 200 <= r.status_code < 300:
            receipt = r.json()
            verify_receipt(receipt, key, b.digest_sm3, province_key(rt))
            _update(rt, key, status="delivered", attempts=attempts, last_error=None, receipt=json.dumps(receipt, ensure_ascii=False))
            _anchor_receipt(rt, b, receipt)
            metrics.REPORT_DELIVERIES.labels(outcome="delivered").inc()
            return get(rt, key)
        error = f"HTTP {r.status_code}: {r.text[:300]}"
        retry = r.status_code in (408, 425, 429) or r.status_code >= 500
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    except (InvalidSignature, ValueError) as exc:
        error = f"receipt not accepted: {exc}"[:300]
    if retry:
        delay = min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** (attempts - 1))
        _update(rt, key, status="pending", attempts=attempts, last_error=error, next_attempt=_iso(_now() + timedelta(seconds=delay)))
        metrics.REPORT_DELIVERIES.labels(outcome="retry").inc()
    else:
        _update(rt, key, status="rejected", attempts=attempts, last_error=error)
        metrics.REPORT_DELIVERIES.labels(outcome="rejected").inc()
    return get(rt, key)


def due(rt: Context, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Pending deliveries whose next attempt has come (the report.deliver job submits each through the gate)."""
    when = _iso(now or _now())
    with rt.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(select(deliveries).where(and_(deliveries.c.status == "pending", deliveries.c.next_attempt <= when)))]


def deliver_due(rt: Context, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Attempt every pending delivery whose time has come (directly; the scheduled path goes through the gate)."""
    return [attempt(rt, d) for d in due(rt, now=now)]


