"""The pool policies: each refusal fires on a bad resource and stays quiet on a good one, in the pack and the transform."""

from __future__ import annotations

from types import SimpleNamespace

import pulumi
import pytest

from infra.policy import checks
from infra.policy.pack import POLICIES
from infra.pools import PoolSpec, StackSpec, TierSpec

GOOD_TAGS = {"department": "d", "classification": "internal", "pool": "primary", "zone": "a"}


def _run_policy(name: str, rtype: str, props: dict) -> list[str]:
    policy = next(p for p in POLICIES if p.name == name)
    found: list[str] = []
    policy.validate(SimpleNamespace(resource_type=rtype, props=props), lambda msg, urn=None: found.append(msg))
    return found


def test_unencrypted_volume() -> None:
    """Local and OpenStack volumes without encryption are refused; encrypted ones pass."""
    assert _run_policy("encrypted-volumes", checks.DYNAMIC, {"kind": "volume", "encrypted": False, "tags": GOOD_TAGS})
    assert not _run_policy("encrypted-volumes", checks.DYNAMIC, {"kind": "volume", "encrypted": True, "tags": GOOD_TAGS})
    assert _run_policy("encrypted-volumes", "openstack:blockstorage/volume:Volume", {"volumeType": "standard", "metadata": GOOD_TAGS})
    assert not _run_policy("encrypted-volumes", "openstack:blockstorage/volume:Volume", {"volumeType": "encrypted-sm4", "metadata": GOOD_TAGS})


def test_public_address_on_data_tier() -> None:
    """A data-tier host with a public address is refused; an app-tier one is not."""
    assert _run_policy("no-public-address-on-data-tier", checks.DYNAMIC, {"netns": "gc-x", "data_tier": True, "public_ip": True, "tags": GOOD_TAGS})
    assert not _run_policy("no-public-address-on-data-tier", checks.DYNAMIC, {"netns": "gc-x", "data_tier": False, "public_ip": True, "tags": GOOD_TAGS})
    assert _run_policy("no-public-address-on-data-tier", "openstack:networking/floatingIp:FloatingIp", {"tags": ["tier=data", "department=d"]})


def test_mandatory_tags() -> None:
    """Missing department or classification is refused, on tag lists and metadata maps alike."""
    assert _run_policy("mandatory-department-and-classification-tags", "openstack:networking/network:Network", {"tags": ["department=d"]})
    assert _run_policy("mandatory-department-and-classification-tags", "openstack:compute/instance:Instance", {"metadata": {"classification": "x"}})
    assert not _run_policy("mandatory-department-and-classification-tags", "openstack:compute/instance:Instance", {"metadata": GOOD_TAGS})


def test_colocated_backup_pool() -> None:
    """The stack policy refuses a backup pool in the primary's zone."""
    policy = next(p for p in POLICIES if p.name == "backup-pool-not-colocated")
    found: list[str] = []
    res = [SimpleNamespace(resource_type="openstack:compute/instance:Instance", props={"metadata": {**GOOD_TAGS, "pool": p}}) for p in ("primary", "backup")]
    policy.validate(SimpleNamespace(resources=res), lambda msg, urn=None: found.append(msg))
    assert found and "co-located" in found[0]


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):  # noqa: ANN001, ANN201
        return [f"{args.name}-id", dict(args.inputs)]

    def call(self, args):  # noqa: ANN001, ANN201
        return {}


def test_transform_stops_a_violating_resource() -> None:
    """Registered as a transform, the checks refuse an unencrypted volume during the program run."""
    pulumi.runtime.set_mocks(_Mocks(), preview=False)
    checks._seen.clear()
    s = StackSpec.model_validate(dict(
        target="openstack", department="d", classification="internal",
        pools={"primary": PoolSpec(role="primary", zone="a", cidr="172.31.1.0/24", encrypted_volumes=False,
                                   tiers={"data": TierSpec(count=1, data_tier=True)}),
               "backup": PoolSpec(role="backup", zone="b", cidr="172.31.2.0/24")},
    ))  # fmt: skip
    with pytest.raises(Exception, match="volume type standard is not an encrypted type"):
        checks.enforce_transform(SimpleNamespace(type_="openstack:blockstorage/volume:Volume", name="v",
                                                 props={"volumeType": "standard", "metadata": GOOD_TAGS}))  # fmt: skip
    assert s.pools["primary"].encrypted_volumes is False
