"""The program: both pools from stack config, plus (on ``local``) the bridge they share.

Run inline through the Automation API by the control plane (``govctl deploy``). The policy
checks of ``infra/policy`` run as a resource transform here too, so a refused resource stops
the update before anything is created.
"""

from __future__ import annotations

import json

import pulumi

from infra.policy.checks import enforce_transform
from infra.pools import ResourcePool, StackSpec


def load_spec() -> StackSpec:
    """The stack's configuration (namespace ``govctl``) as a validated spec."""
    cfg = pulumi.Config("govctl")
    return StackSpec.model_validate(json.loads(cfg.require("spec")))


def program() -> None:
    """Provision the primary and the backup pool."""
    spec = load_spec()
    pulumi.runtime.register_resource_transform(enforce_transform)
    opts = None
    if spec.target == "local":
        from infra.local_provider import Bridge

        bridge = Bridge("pools-bridge", name=spec.local_bridge, gateway_cidr=spec.local_gateway)
        opts = pulumi.ResourceOptions(depends_on=[bridge])
    pools = {role: ResourcePool(f"{role}-pool", spec, spec.pools[role], opts) for role in ("primary", "backup")}
    for role, pool in pools.items():
        pulumi.export(f"{role}_hosts", pool.hosts)
        pulumi.export(f"{role}_host_keys", pool.host_keys)
        pulumi.export(f"{role}_bucket", pool.bucket)
        pulumi.export(f"{role}_zone", spec.pools[role].zone)
