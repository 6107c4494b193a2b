"""The gate's API routes: submit, list, show (opening makes a deferred preview), approve, reject, cancel, run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from control_plane.apikit import changes, context, decides, reads
from control_plane.gate.models import OperationRequest

router = APIRouter(tags=["gate"])


class SubmitBody(BaseModel):
    """A request to change something."""

    operation: str = Field(examples=["deploy.up"])
    target: str = Field(default="", examples=["primary"])
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    break_glass: bool = False


class DecisionBody(BaseModel):
    """An approver's comment."""

    comment: str = ""


@router.post("/api/v1/ops", status_code=201, summary="Submit an operation through the gate")
def submit(request: Request, body: SubmitBody, p: Any = Depends(changes("*"))) -> dict[str, Any]:
    view = context(request).gate.submit(p, OperationRequest(body.operation, body.target, body.params, body.reason, body.break_glass))
    return view.as_dict()


@router.get("/api/v1/ops", summary="Operations, newest first")
def list_ops(request: Request, status: str | None = None, limit: int = 50, p: Any = Depends(reads("ops.read"))) -> list[dict[str, Any]]:
    return [v.as_dict() for v in context(request).gate.list(status=status, limit=min(limit, 500))]


@router.get("/api/v1/ops/{op_id}", summary="One operation: request, risk, SOC findings, preview, approvals")
def get_op(request: Request, op_id: str, p: Any = Depends(reads("ops.read"))) -> dict[str, Any]:
    return context(request).gate.get(op_id, opened_by=p).as_dict()


@router.post("/api/v1/ops/{op_id}/approve", summary="Approve (approvers only, never your own)")
def approve(request: Request, op_id: str, body: DecisionBody, p: Any = Depends(decides("approve"))) -> dict[str, Any]:
    return context(request).gate.approve(p, op_id, body.comment).as_dict()


@router.post("/api/v1/ops/{op_id}/reject", summary="Reject")
def reject(request: Request, op_id: str, body: DecisionBody, p: Any = Depends(decides("reject"))) -> dict[str, Any]:
    return context(request).gate.approve(p, op_id, body.comment, decision="reject").as_dict()


@router.post("/api/v1/ops/{op_id}/cancel", summary="Withdraw a pending or approved operation")
def cancel(request: Request, op_id: str, p: Any = Depends(decides("cancel"))) -> dict[str, Any]:
    return context(request).gate.cancel(p, op_id).as_dict()


@router.post("/api/v1/ops/{op_id}/run", summary="Run your approved operation (once)")
def run(request: Request, op_id: str, p: Any = Depends(decides("run"))) -> dict[str, Any]:
    return context(request).gate.run(p, op_id).as_dict()
