"""The program: both pools from stack config, plus (on ``local``) the bridge they share.

Run inline through the Automation API by the control plane (``govctl deploy``). The policy
checks of ``infra/policy`` run as a resource transform here too, so a refused resource stops
the update before anything is created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi

from infra.policy.checks import enforce_transform
from infra.pools import ResourcePool, StackSpec


def load_spec() -> StackSpec:
    """The stack's configuration as a validated spec: ``govctl:spec`` when the control plane runs the program; under the
    standard CLI, the spec ``govctl deploy`` last used for this stack (``<var_dir>/pulumi/cli/<stack>.json``, 0600)."""
    raw = pulumi.Config("govctl").get("spec")
    if raw is None:
        raw = cli_spec(pulumi.get_stack())
    return StackSpec.model_validate(json.loads(raw))


def cli_spec_path(var_dir: Path, stack: str) -> Path:
    """Where govctl leaves a stack's spec for the standard CLI."""
    return var_dir / "pulumi" / "cli" / f"{stack}.json"


def cli_spec(stack: str) -> str:
    """The spec govctl recorded for ``stack``, found through govctl.yaml (or $GOVCTL_CONFIG) in the working directory."""
    from control_plane.config import load

    settings = load()
    path = cli_spec_path(settings.var, stack)
    if not path.is_file():
        raise pulumi.RunError(f"no settings for stack {stack!r} at {path}: run `govctl deploy preview --stack {stack}` once (it records them), "
                              "then the standard CLI uses the same")  # fmt: skip
    return path.read_text(encoding="utf-8")


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
