"""Departments' requests as gate operations: the bureau approves each; quotas are checked when asked and again when carried out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from control_plane.operation import Call, Operation, Params
from control_plane.tenancy import service as ten

DEPT_T = r"^[a-z0-9][a-z0-9-]{0,63}$"
ALLOC_T = r"^al-[0-9a-f]{12}$"
DATE = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\d$")]


class Request(Params):
    stack: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")] = "local"
    pool: Literal["primary", "backup"] = "primary"
    network_zone: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")] | None = None  # checked against the pool's (registry)
    hosts: int = Field(default=1, ge=1, le=20)
    tier: Literal["app", "data"] = "app"
    vcpu: int = Field(ge=1, le=128)
    memory_gib: int = Field(ge=1, le=1024)
    storage_gib: int = Field(ge=1, le=65536)
    expires: DATE | None = None  # a temporary host: reminded before, a reclamation request after
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class Resize(Params):
    vcpu: int | None = Field(default=None, ge=1, le=128)
    memory_gib: int | None = Field(default=None, ge=1, le=1024)
    storage_gib: int | None = Field(default=None, ge=1, le=65536)


class Extend(Params):
    expires: DATE


class Quota(Params):
    pool: Literal["primary", "backup"]
    vcpu: int = Field(ge=0, le=100_000)
    memory_gib: int = Field(ge=0, le=1_000_000)
    storage_gib: int = Field(ge=0, le=100_000_000)
    hosts: int = Field(ge=0, le=10_000)


class Answer(Params):
    answer: Literal["confirm", "justify"]
    note: Annotated[str, StringConstraints(max_length=1000)] = ""


def _validate_request(call: Call) -> None:
    p = call.params
    ten.check_actor(call.ctx, call.by, call.target)
    ten.check_expiry(p.get("expires"))
    if p["stack"] not in call.ctx.settings.deploy.stacks:
        raise ten.TenancyError(f"unknown stack {p['stack']!r}", hint=f"stacks: {', '.join(call.ctx.settings.deploy.stacks)}")
    zone = ten.registry(call.ctx).pools.get(p["pool"])
    if p.get("network_zone") and zone is not None and zone.network_zone != p["network_zone"]:
        raise ten.TenancyError(f"the {p['pool']} pool is in network zone {zone.network_zone}, not {p['network_zone']}",
                               hint="pick the pool in the zone the system needs (monitors/registry.yaml: pools)")  # fmt: skip
    n = p["hosts"]
    ten.check_quota(call.ctx, call.target, p["pool"], {"hosts": n, "vcpu": n * p["vcpu"], "memory_gib": n * p["memory_gib"], "storage_gib": n * p["storage_gib"]})


def _mine(call: Call) -> dict[str, Any]:
    a = ten.get(call.ctx, call.target)
    ten.check_actor(call.ctx, call.by, a["department"])
    if a["status"] != "active":
        raise ten.TenancyError(f"allocation {call.target} is {a['status']}, not active")
    return a


def _validate_resize(call: Call) -> None:
    a = _mine(call)
    p = call.params
    if not any(p.get(k) for k in ("vcpu", "memory_gib", "storage_gib")):
        raise ten.TenancyError("a resize names at least one of vcpu, memory_gib, storage_gib")
    new = {k: p.get(k) or a[k] for k in ("vcpu", "memory_gib", "storage_gib")}
    ten.check_quota(call.ctx, a["department"], a["pool"], {"hosts": 1, **new}, exclude=a["id"])


def _validate_extend(call: Call) -> None:
    _mine(call)
    ten.check_expiry(call.params["expires"])


def _validate_answer(call: Call) -> None:
    found = next((r for r in ten.reclaims(call.ctx) if r["op"] == call.target), None)
    if found is None:
        raise ten.TenancyError(f"{call.target} is not an open reclamation request", hint="govctl resource reclaims")
    ten.check_actor(call.ctx, call.by, found["department"])


OPERATIONS = (
    Operation("resource.request", DEPT_T, "a department code from the registry", lambda c: ten.request(c.ctx, c.target, c.params, by=c.by, op_id=c.op_id,
              progress=c.progress), Request, validate=_validate_request,
              description="申请: new hosts for a department in a pool, within its quota; deployed once the bureau approves"),  # fmt: skip
    Operation("resource.resize", ALLOC_T, "an allocation id (govctl resource list)", lambda c: ten.resize(c.ctx, c.target, c.params, progress=c.progress),
              Resize, validate=_validate_resize, description="a department's host resized (vCPU, memory, storage), within its quota"),  # fmt: skip
    Operation("resource.extend", ALLOC_T, "an allocation id (govctl resource list)", lambda c: ten.extend(c.ctx, c.target, c.params["expires"],
              progress=c.progress), Extend, validate=_validate_extend, description="a temporary host kept longer"),  # fmt: skip
    Operation("resource.quota", DEPT_T, "a department code from the registry",
              lambda c: ten.set_quota(c.ctx, c.target, c.params["pool"], c.params, by=c.by, op_id=c.op_id), Quota,
              description="配额: the bureau changes a department's quota in a pool (overrides the registry's; never below what it holds)"),  # fmt: skip
    Operation("resource.answer", r"^op-\d{8}-[0-9a-f]{8}$", "a reclamation request's operation id (govctl resource reclaims)",
              lambda c: ten.answer(c.ctx, c.target, c.params["answer"], c.params["note"], by=c.by), Answer, validate=_validate_answer,
              description="a department confirms a reclamation request or justifies keeping the host; the approver decides on it"),  # fmt: skip
    Operation("resource.return", ALLOC_T, "an allocation id (govctl resource list)", lambda c: ten.give_back(c.ctx, c.target, progress=c.progress),
              validate=lambda c: (_mine(c), None)[1], description="回收: a department's host destroyed with its volume, its quota freed"),  # fmt: skip
)
