"""The gate's refusals: each says why, and what would make the request acceptable."""

from __future__ import annotations

from control_plane.errors import GateError
from control_plane.operation import InvalidRequest

__all__ = ["GateError", "InvalidRequest", "Unauthenticated", "Forbidden", "Blocked", "DependencyDown", "ApprovalError", "NotFound"]


class Unauthenticated(GateError):
    """No valid credentials: a missing, unknown, expired or revoked token."""

    exit_code = 3
    http_status = 401


class Forbidden(GateError):
    """The principal's roles or source network do not allow this operation on this target."""

    exit_code = 4
    http_status = 403


class Blocked(GateError):
    """The SOC engine blocked the operation."""

    exit_code = 5
    http_status = 403


class DependencyDown(GateError):
    """A dependency the policy says to fail closed on is down."""

    exit_code = 6
    http_status = 503


class ApprovalError(GateError):
    """An approval is missing, invalid, expired, voided, or by the wrong person."""

    exit_code = 7
    http_status = 409


class NotFound(GateError):
    """No such operation, user or token."""

    http_status = 404
