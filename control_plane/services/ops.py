"""The local services' operations: start and stop Elasticsearch, Prometheus, node_exporter, PostgreSQL."""

from __future__ import annotations

from typing import Any

from control_plane.operation import SERVICES_T, TARGETS, Call, NoParams, Operation, Params


class ServicesUp(Params):
    rollback: bool = False


def _names(target: str) -> list[str] | None:
    return [n for n in target.split(",") if n and n != "all"] or None


def _up(call: Call) -> dict[str, Any]:
    sup = call.ctx.supervisor
    started: list[str] = []
    try:
        rows = sup.up(_names(call.target), on_event=lambda n, m: started.append(n) if m.startswith("starting") else None)
    except Exception:
        if call.params.get("rollback"):
            sup.down(started)  # leave nothing half-started behind
        raise
    return {"started": started, "status": [r.as_dict() for r in rows]}


def _down(call: Call) -> dict[str, Any]:
    return {"stopped": call.ctx.supervisor.down(_names(call.target))}


OPERATIONS = (
    Operation("services.up", SERVICES_T, TARGETS[SERVICES_T], _up, ServicesUp, description="start local services"),
    Operation("services.down", SERVICES_T, TARGETS[SERVICES_T], _down, NoParams, description="stop local services"),
)
