"""The operation gate (事前管审批): one path for every change to the world."""

from control_plane.gate.errors import ApprovalError, Blocked, DependencyDown, Forbidden, GateError, NotFound, Unauthenticated
from control_plane.gate.models import OperationRequest, OperationView, Principal
from control_plane.gate.service import Gate, system_principal

__all__ = ["ApprovalError", "Blocked", "DependencyDown", "Forbidden", "GateError", "NotFound", "Unauthenticated",
           "OperationRequest", "OperationView", "Principal", "Gate", "system_principal"]  # fmt: skip
