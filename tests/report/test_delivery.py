"""Delivery to the province's (stand-in) endpoint: sealed and signed, idempotent, retried through an outage, restart-safe."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from control_plane.crypto import IntegrityError, SM2PrivateKey
from control_plane.report import deliver, store
from tests.standins.province import Receiver, receiver_dir, serve_in_thread
from control_plane.report.seal import open_seal, seal
from control_plane.context import Context
from control_plane.wiring import context_for
from control_plane.scheduler import run_job


@pytest.fixture()
def endpoint(report_rt: Context):  # noqa: ANN201
    """The stand-in receiver on its test port, in a thread."""
    server, thread, recv = serve_in_thread(report_rt.settings, report_rt.signer.public_key)
    url = report_rt.settings.report.endpoint_url.rsplit("/api/", 1)[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield recv
    server.should_exit = True
    thread.join(timeout=10)


def _built(rt: Context) -> store.Built:
    return store.build(rt, "2026-10", actor="test", render=False)


def test_seal_opens_only_for_the_province_and_detects_changes() -> None:
    """SM4-GCM under an SM2-wrapped data key: the right key opens it; another key, or any changed byte, does not."""
    prov, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    env = seal(b"report bytes", prov.public_key, {"month": "2026-10", "revision": 1, "idempotency_key": "k"})
    assert open_seal(env, prov) == b"report bytes"
    with pytest.raises(IntegrityError, match="sealed for key"):
        open_seal(env, other)
    bad = dict(env, aad={**env["aad"], "revision": 2})  # the bound month/revision cannot be swapped
    with pytest.raises(IntegrityError, match="SM4-GCM authentication failed"):
        open_seal(bad, prov)
    ct = bytearray(base64.b64decode(env["ciphertext"]))
    ct[20] ^= 1
    with pytest.raises(IntegrityError):
        open_seal(dict(env, ciphertext=base64.b64encode(bytes(ct)).decode()), prov)


def test_outage_retries_then_receipt(report_rt: Context, endpoint: Receiver) -> None:
    """The endpoint fails twice (503): the delivery stays pending with back-off, then lands with a verified, stored receipt."""
    rt = report_rt
    b = _built(rt)
    endpoint.fail_next = 2
    d = deliver.attempt(rt, deliver.enqueue(rt, b))
    assert (d["status"], d["attempts"]) == ("pending", 1) and "503" in d["last_error"]
    first_retry = datetime.fromisoformat(d["next_attempt"])
    assert deliver.deliver_due(rt) == []  # not yet due
    d = deliver.deliver_due(rt, now=first_retry + timedelta(seconds=1))[0]
    assert (d["status"], d["attempts"]) == ("pending", 2)
    assert datetime.fromisoformat(d["next_attempt"]) - datetime.now(timezone.utc) > timedelta(seconds=1)  # doubled: 2 s
    d = deliver.deliver_due(rt, now=datetime.now(timezone.utc) + timedelta(seconds=10))[0]
    assert (d["status"], d["attempts"]) == ("delivered", 3)
    rc = d["receipt"]["receipt"]
    assert (rc["month"], rc["revision"], rc["digest_sm3"]) == ("2026-10", 1, b.digest_sm3)
    # the province kept exactly the signed report
    stored = list((receiver_dir(rt.settings) / "inbox").glob("*.report.json"))
    assert len(stored) == 1 and stored[0].read_bytes() == (b.path / "report.json").read_bytes()
    assert endpoint.calls == 3


def test_resubmission_is_idempotent(report_rt: Context, endpoint: Receiver) -> None:
    """Sending the same revision again (a crash after sending, before recording) gets the same receipt, not a second filing."""
    rt = report_rt
    b = _built(rt)
    d = deliver.attempt(rt, deliver.enqueue(rt, b))
    assert d["status"] == "delivered"
    env = deliver.sealed_payload(rt, b)
    again = httpx.post(rt.settings.report.endpoint_url, json=env, headers={"Idempotency-Key": d["idempotency_key"]}, timeout=10)
    assert again.status_code == 200 and again.json() == d["receipt"]
    assert len(list((receiver_dir(rt.settings) / "inbox").glob("*.receipt.json"))) == 1
    assert deliver.enqueue(rt, b)["id"] == d["id"]  # the outbox holds it once


def test_restart_mid_delivery_loses_nothing(report_rt: Context, endpoint: Receiver, tmp_path: Path) -> None:
    """A delivery left pending when the process stopped is sent by a new process from the state DB and the kept envelope."""
    rt = report_rt
    b = _built(rt)
    endpoint.fail_next = 1
    d = deliver.attempt(rt, deliver.enqueue(rt, b))
    assert d["status"] == "pending"
    sealed = (b.path.parent / "r1.sealed.json").read_bytes()
    fresh = context_for(rt.settings)  # a new process: nothing in memory, same state DB and var/
    out = deliver.deliver_due(fresh, now=datetime.now(timezone.utc) + timedelta(seconds=5))
    assert [x["status"] for x in out] == ["delivered"]
    assert (b.path.parent / "r1.sealed.json").read_bytes() == sealed  # the same bytes were retried, not a new seal


def test_province_rejects_a_forged_report(report_rt: Context, endpoint: Receiver) -> None:
    """A report signed by a key the province does not trust is refused (422) and the delivery is marked rejected, not retried."""
    rt = report_rt
    b = _built(rt)
    forged = SM2PrivateKey.generate()
    endpoint.platform = forged.public_key  # the province trusts someone else's key
    d = deliver.attempt(rt, deliver.enqueue(rt, b))
    assert d["status"] == "rejected" and "422" in d["last_error"] and "signed by key" in d["last_error"]
    assert deliver.deliver_due(rt, now=datetime.now(timezone.utc) + timedelta(days=1)) == []


def test_monthly_job_builds_once_per_month_and_delivers(report_rt: Context, endpoint: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduled run builds last month and submits it; a second run in the same slot does nothing; the schedule tolerates long misfires."""
    rt = report_rt
    import control_plane.report.scheduled as sched_mod

    from control_plane import clock

    class _OnTheFirst:  # the job reads the month from the clock: 1 November 2026, 06:00 in Shanghai
        SHOWN_TZ = clock.SHOWN_TZ

        @staticmethod
        def now() -> datetime:
            return datetime(2026, 11, 1, 6, 0, tzinfo=clock.SHOWN_TZ)

    monkeypatch.setattr(sched_mod, "clock", _OnTheFirst)
    r1 = run_job(rt, "report.monthly", trigger="schedule", slot="2026-11-01T06:00:00+08:00")
    assert r1.status == "succeeded", r1
    assert "2026-10 r1 built" in r1.detail and "delivered" in r1.detail
    r2 = run_job(rt, "report.monthly", trigger="schedule", slot="2026-11-01T06:00:00+08:00")
    assert r2.status == "skipped"
    assert [b.revision for b in store.all_revisions(rt)] == [1]
    assert [d["status"] for d in deliver.list_deliveries(rt)] == ["delivered"]
    audit = [(r.operation, r.outcome) for r in rt.ledger.query(actor="system:scheduler", limit=20)]
    assert ("report.build", "succeeded") in audit and ("report.submit", "succeeded") in audit  # through the gate, as system:scheduler
    # the misfire grace lets a run missed while the machine was off start days later
    from apscheduler.schedulers.background import BackgroundScheduler

    from control_plane.scheduler.service import build, sync_jobs

    s: BackgroundScheduler = build(rt)
    s.start(paused=True)
    try:
        sync_jobs(rt, s)
        job = s.get_job("report.monthly")
        assert job.misfire_grace_time == 20 * 86400
        assert "day='1'" in str(job.trigger) and "hour='6'" in str(job.trigger)
    finally:
        s.shutdown(wait=False)
    json.dumps(r1.__dict__, default=str)
