"""Deployments of the primary and backup pools (Pulumi), as gate operations."""

from __future__ import annotations

from typing import Any

from control_plane.deploy import service as deploy
from control_plane.monitoring import refresh
from control_plane.operation import STACK_T, TARGETS, Call, Operation


def _validate(call: Call) -> None:
    deploy.stack_spec(call.ctx, call.target)


def _up(call: Call) -> dict[str, Any]:
    out = deploy.up(call.ctx, call.target, call.progress)
    out["monitoring"] = refresh(call.ctx)  # the new hosts' node_exporters are scraped from now on
    return out


def _destroy(call: Call) -> dict[str, Any]:
    out = deploy.destroy(call.ctx, call.target, call.progress)
    out["monitoring"] = refresh(call.ctx)
    return out


OPERATIONS = (
    Operation("deploy.preview", STACK_T, TARGETS[STACK_T], lambda c: deploy.preview(c.ctx, c.target), validate=_validate,
              description="what a deployment would change"),  # fmt: skip
    Operation("deploy.up", STACK_T, TARGETS[STACK_T], _up, validate=_validate, preview=lambda c: deploy.preview(c.ctx, c.target),
              description="create or update a stack's pools"),  # fmt: skip
    Operation("deploy.destroy", STACK_T, TARGETS[STACK_T], _destroy, validate=_validate,
              preview=lambda c: deploy.preview_destroy(c.ctx, c.target), description="destroy a stack"),  # fmt: skip
)
