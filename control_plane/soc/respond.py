"""Responses: a rule's ``response`` playbook, requested through the gate when its alert is raised.

The SOC engine acts as its own reserved principal (``system:soc-engine``); the policy lets it request
playbook runs and nothing else, none unattended, so an approver decides as for any other request.
The request carries the alert as its typed origin (``{"alert": id}``); its check-mode preview is
made when an approver opens it, never inside the detection pass. The approved run is carried
out by the ``soc.responses`` job and its outcome attached to the alert. Variables come
from the alert's first event: the source address for ``block_ip``, the user for ``lock_account``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest, system_principal
from control_plane.gate.models import operations
from control_plane.soc import alerts
from control_plane.soc.matcher import get_field

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.soc")
ENGINE = system_principal("system:soc-engine")  # a reserved name: no user can take it
VARS = {"block_ip": {"ip": "source.ip"}, "unblock_ip": {"ip": "source.ip"}, "lock_account": {"account": "user.name"}}


def request(rt: Context, rule: Any, alert_id: str) -> dict[str, Any]:
    """Ask the gate to run the rule's response for this alert; record what happened on the alert."""
    alert = alerts.get(rt.es, alert_id)
    ev = (alert.get("events") or [{}])[0]
    playbook = rule.ours.response
    host = get_field(ev, "host.name")
    extravars = {var: get_field(ev, f) for var, f in VARS.get(playbook, {}).items()}
    missing = [v for v, val in extravars.items() if not isinstance(val, str)]
    if not isinstance(host, str) or missing:
        out = {"playbook": playbook, "status": "not requested", "error": f"the alert's event has no {'host.name' if not isinstance(host, str) else missing[0]}"}
        alerts.set_response(rt.es, alert_id, out)
        return out
    req = OperationRequest("playbook.run", host, {"playbook": playbook, "extravars": extravars},
                           reason=f"response to alert {alert_id}: {rule.title}", origin={"alert": alert_id})  # fmt: skip
    try:
        view = rt.gate.submit(ENGINE, req)
        out = {"playbook": playbook, "op_id": view.id, "status": view.status, "target": host, "extravars": extravars}
    except GovctlError as exc:
        out = {"playbook": playbook, "status": "refused", "error": exc.one_line(), "target": host}
    alerts.set_response(rt.es, alert_id, out)
    return out


def run_approved(rt: Context) -> list[dict[str, Any]]:
    """Carry out every approved response and attach its outcome to its alert."""
    with rt.engine.connect() as conn:
        rows = conn.execute(select(operations.c.id, operations.c.origin).where(
            and_(operations.c.requester == ENGINE.name, operations.c.status == "approved"))).all()  # fmt: skip
    done = []
    for op_id, origin in rows:
        alert_id = (json.loads(origin) if origin else {}).get("alert")
        try:
            view = rt.gate.run(ENGINE, op_id)
            out = {"op_id": op_id, "status": view.status, "changed": view.result.get("changed"), "artifacts": view.result.get("artifacts")}
        except GovctlError as exc:
            out = {"op_id": op_id, "status": "failed", "error": exc.one_line()}
        try:
            if alert_id:
                alerts.set_response(rt.es, alert_id, out)
        except GovctlError:
            log.warning("response %s ran but alert %s is gone", op_id, alert_id)
        done.append(out)
    return done
