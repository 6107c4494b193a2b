"""The audit mirror into the real Elasticsearch: complete, idempotent, and patient while it is down."""

from __future__ import annotations

import uuid

from control_plane.audit import AuditEvent
from control_plane.audit.mirror import cursor, mirror
from control_plane.es import client
from control_plane.context import Context


def _count(rt: Context, index: str) -> int:
    rt.es.indices.refresh(index=index)
    return rt.es.count(index=index)["count"]


def test_mirror_catches_up_after_outage(runtime: Context, services) -> None:  # noqa: ANN001
    """Records appended while Elasticsearch is unreachable arrive later, once each."""
    index = f"govctl-test-audit-{uuid.uuid4().hex[:8]}"
    actor = f"ops-{uuid.uuid4().hex[:8]}"
    for i in range(30):
        runtime.ledger.append(AuditEvent(actor=actor, operation="deploy.preview", params={"i": i}))
    first = mirror(runtime.ledger, runtime.es, index, feeds=runtime.wiring.audit_feeds)
    assert first.error is None and first.sent == 30 and first.last_seq == 30
    assert _count(runtime, index) == 30

    for i in range(20):
        runtime.ledger.append(AuditEvent(actor=actor, operation="deploy.up", params={"i": i}, outcome="refused", decision="deny"))
    dead = client("http://127.0.0.1:9", timeout=1)  # nothing listens on the discard port
    down = mirror(runtime.ledger, dead, index, feeds=runtime.wiring.audit_feeds)
    assert down.error and "unreachable" in down.error and down.sent == 0
    assert cursor(runtime.ledger) == 30

    back = mirror(runtime.ledger, runtime.es, index, feeds=runtime.wiring.audit_feeds)
    assert back.error is None and back.sent == 20 and back.last_seq == 50
    assert _count(runtime, index) == 50
    # each record is also an ECS event for the SOC engine, once
    runtime.es.indices.refresh(index="soc-events-*")
    evs = runtime.es.search(index="soc-events-*", size=100, query={"bool": {"filter": [
        {"term": {"event.dataset": "govctl.audit"}}, {"term": {"user.name": actor}}]}})["hits"]["hits"]  # fmt: skip
    assert len(evs) == 50
    refused = [e["_source"] for e in evs if e["_source"]["govctl"]["decision"] == "deny"]
    assert len(refused) == 20 and {e["event"]["outcome"] for e in refused} == {"failure"} and refused[0]["event"]["action"] == "deploy.up"


def test_mirror_resend_does_not_duplicate(runtime: Context, services) -> None:  # noqa: ANN001
    """A batch sent twice (as after a crash before the cursor moved) overwrites, never doubles."""
    index = f"govctl-test-audit-{uuid.uuid4().hex[:8]}"
    for i in range(10):
        runtime.ledger.append(AuditEvent(actor="sec", operation="soc.rule.change", params={"i": i}))
    mirror(runtime.ledger, runtime.es, index, feeds=runtime.wiring.audit_feeds)
    from control_plane.audit.mirror import _set_cursor

    _set_cursor(runtime.ledger, 0)  # as if the process died before saving the cursor
    again = mirror(runtime.ledger, runtime.es, index, feeds=runtime.wiring.audit_feeds)
    assert again.sent == 10
    assert _count(runtime, index) == 10
    doc = runtime.es.get(index=index, id="3")["_source"]
    assert doc["event"]["action"] == "soc.rule.change" and doc["govctl"]["audit"]["seq"] == 3
    assert doc["user"]["name"] == "sec"
