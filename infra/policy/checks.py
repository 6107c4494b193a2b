"""The pool policies as plain functions over (resource type, properties).

Refused: a backup pool co-located with the primary, an unencrypted volume, a public address
on the data tier, and any taggable resource without department and classification tags.
The same functions back the pulumi-policy pack (``pack.py``) and the resource transform the
program registers, so a refused resource stops an update before anything is created.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REQUIRED_TAGS = ("department", "classification")
DYNAMIC = "pulumi-python:dynamic:Resource"
OS_TAG_LIST = {"openstack:networking/network:Network", "openstack:networking/subnet:Subnet",
               "openstack:networking/secGroup:SecGroup", "openstack:networking/floatingIp:FloatingIp"}  # fmt: skip
OS_TAG_MAP = {"openstack:blockstorage/volume:Volume": "metadata", "openstack:compute/instance:Instance": "metadata",
              "openstack:objectstorage/container:Container": "metadata", "openstack:keymanager/secretV1:SecretV1": "metadata"}  # fmt: skip


def tags_of(rtype: str, props: dict[str, Any]) -> dict[str, str] | None:
    """The resource's tags as a mapping, or None if this kind of resource carries no tags."""
    if rtype == DYNAMIC:
        return props.get("tags") if ("kind" in props or "netns" in props) else None
    if rtype in OS_TAG_LIST:
        return dict(t.split("=", 1) for t in (props.get("tags") or []) if isinstance(t, str) and "=" in t)
    if rtype in OS_TAG_MAP:
        return props.get(OS_TAG_MAP[rtype]) or {}
    return None


def missing_tags(rtype: str, props: dict[str, Any]) -> list[str]:
    """Violations for a taggable resource without department or classification."""
    tags = tags_of(rtype, props)
    if tags is None:
        return []
    missing = [t for t in REQUIRED_TAGS if not (tags or {}).get(t)]
    return [f"missing mandatory tag(s) {', '.join(missing)}: every resource is attributed to a department and a data classification"] if missing else []


def unencrypted_volume(rtype: str, props: dict[str, Any]) -> list[str]:
    """Violations for a volume that is not encrypted."""
    if rtype == DYNAMIC and props.get("kind") == "volume" and not props.get("encrypted"):
        return ["volume is not encrypted: data at rest must be encrypted (SM4)"]
    if rtype == "openstack:blockstorage/volume:Volume":
        vt = str(props.get("volume_type") or props.get("volumeType") or "")
        if "encrypt" not in vt or str((props.get("metadata") or {}).get("encrypted", "true")).lower() == "false":
            return [f"volume type {vt or '(default)'} is not an encrypted type: data at rest must be encrypted (SM4)"]
    return []


def public_data_tier(rtype: str, props: dict[str, Any]) -> list[str]:
    """Violations for a public address on the data tier."""
    if rtype == DYNAMIC and "netns" in props and props.get("data_tier") and props.get("public_ip"):
        return [f"data-tier host {props['netns']} has a public address: the data tier stays on the government network"]
    if rtype == "openstack:networking/floatingIp:FloatingIp":
        tags = tags_of(rtype, props) or {}
        if tags.get("tier") == "data" or tags.get("data_tier") == "true":
            return ["floating (public) IP on the data tier: the data tier stays on the government network"]
    return []


RESOURCE_CHECKS = (missing_tags, unencrypted_volume, public_data_tier)


def resource_violations(rtype: str, props: dict[str, Any]) -> list[str]:
    """Every resource-level violation of one resource."""
    return [v for check in RESOURCE_CHECKS for v in check(rtype, props)]


def colocated_pools(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Violations when the backup pool shares a placement (zone) with the primary."""
    zones: dict[str, set[str]] = {"primary": set(), "backup": set()}
    for rtype, props in resources:
        tags = tags_of(rtype, props) or {}
        zone = tags.get("zone") or props.get("availability_zone") or props.get("availabilityZone")
        pool = tags.get("pool")
        if pool in zones and zone:
            zones[pool].add(str(zone))
    shared = zones["primary"] & zones["backup"]
    return [f"backup pool is co-located with the primary in {', '.join(sorted(shared))}: it must be placed elsewhere"] if shared else []


class PolicyViolation(Exception):
    """A resource the pool policies refuse."""


_seen: list[tuple[str, dict[str, Any]]] = []


def enforce_transform(args: Any) -> None:
    """A Pulumi resource transform: refuse a violating resource before it is registered."""
    rtype, props = args.type_, dict(args.props or {})
    problems = resource_violations(rtype, props)
    _seen.append((rtype, props))
    problems += colocated_pools(_seen)
    if problems:
        raise PolicyViolation(f"{args.name}: " + "; ".join(problems))
    return None
