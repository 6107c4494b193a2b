"""What every domain's ``views.py`` shares: the context, the caller's identity, and access marks for routes.

A route declares what it maps to in the policy with one dependency: ``Depends(reads("audit.read"))``
authorizes the caller through ``Gate.authorize_read`` (the same call the CLI makes) and returns
the principal; ``Depends(changes("*"))`` authenticates a caller whose request the gate will
authorize when it is submitted; ``Depends(decides("approve"))`` marks a decision on an operation.
``tests/test_access_map.py`` lists every route and fails on one without a mark.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.context import Context

_bearer = HTTPBearer(auto_error=False)


def context(request: Request) -> Context:
    """The context the app was built around."""
    return request.app.state.ctx


def authenticate(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:
    """The bearer token's principal (the API has no peer authentication)."""
    source = request.client.host if request.client else "unknown"
    return context(request).gate.authenticate(cred.credentials if cred else None, source=source)


class Access:
    """A route's mark: what it maps to in the policy; as a dependency it authenticates (and, for reads, authorizes)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __call__(self, request: Request, p: Any = Depends(authenticate)) -> Any:
        """The principal, once allowed."""
        if self.kind == "reads":
            context(request).gate.authorize_read(p, self.name)
        return p


def reads(name: str) -> Access:
    """A route that is the policy's read ``name``."""
    return Access("reads", name)


def changes(operation: str = "*") -> Access:
    """A route that submits an operation (``*``: the one named in the body); the gate authorizes it."""
    return Access("changes", operation)


def decides(action: str) -> Access:
    """A route that decides on an operation (approve, reject, cancel, run): the gate's own rules authorize it."""
    return Access("decides", action)
