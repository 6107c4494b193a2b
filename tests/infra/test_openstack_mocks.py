"""The openstack target under Pulumi's mocks: the pools' resources, tags, encryption and placement."""

from __future__ import annotations

import pulumi
import pytest

from infra.pools import PoolSpec, ResourcePool, StackSpec, TierSpec

CREATED: list[tuple[str, str, dict]] = []


class Mocks(pulumi.runtime.Mocks):
    """Stand-in for the government cloud's API: echo inputs back with an id."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):  # noqa: ANN201
        CREATED.append((args.typ, args.name, dict(args.inputs)))
        outs = dict(args.inputs)
        if args.typ == "openstack:compute/instance:Instance":
            outs["accessIpV4"] = f"192.0.2.{len(CREATED)}"
        return [f"{args.name}-id", outs]

    def call(self, args: pulumi.runtime.MockCallArgs):  # noqa: ANN201
        return {}


def spec(**over: object) -> StackSpec:
    """A two-pool openstack stack."""
    data = dict(
        target="openstack", department="city-big-data-bureau", classification="sensitive",
        pools={"primary": PoolSpec(role="primary", zone="az-east", cidr="172.30.1.0/24",
                                   tiers={"app": TierSpec(count=2), "data": TierSpec(count=1, data_tier=True)}),
               "backup": PoolSpec(role="backup", zone="az-west", cidr="172.30.2.0/24", tiers={"data": TierSpec(count=1, data_tier=True)})},
    )  # fmt: skip
    data.update(over)
    return StackSpec.model_validate(data)


@pytest.fixture()
def mocked() -> list[tuple[str, str, dict]]:
    """Pulumi mocks for one test."""
    CREATED.clear()
    pulumi.runtime.set_mocks(Mocks(), preview=False)
    return CREATED


@pulumi.runtime.test
def _build(s: StackSpec) -> pulumi.Output:
    pools = [ResourcePool(f"{r}-pool", s, s.pools[r]) for r in ("primary", "backup")]
    return pulumi.Output.all(*[p.hosts[h] for p in pools for h in p.hosts])


def test_pools_resources_and_tags(mocked: list) -> None:
    """Each pool gets network, subnet, security group, instances per tier, encrypted volumes, bucket and key, all tagged."""
    _build(spec())
    kinds = [t for t, _, _ in mocked]
    assert kinds.count("openstack:compute/instance:Instance") == 4
    assert kinds.count("openstack:blockstorage/volume:Volume") == 4
    for t in ("openstack:networking/network:Network", "openstack:networking/subnet:Subnet", "openstack:networking/secGroup:SecGroup",
              "openstack:objectstorage/container:Container", "openstack:keymanager/secretV1:SecretV1"):  # fmt: skip
        assert kinds.count(t) == 2, t
    for t, name, inputs in mocked:
        if t == "openstack:blockstorage/volume:Volume":
            assert inputs["volumeType"] == "encrypted-sm4", name
        if t == "openstack:compute/instance:Instance":
            assert inputs["metadata"]["department"] == "city-big-data-bureau" and inputs["metadata"]["classification"] == "sensitive"
            assert inputs["availabilityZone"] == ("az-east" if name.startswith("primary") else "az-west")
        if t == "openstack:networking/network:Network":
            assert "department=city-big-data-bureau" in inputs["tags"]


def test_backup_must_not_share_primary_placement() -> None:
    """A backup pool in the primary's zone is refused with the key path."""
    with pytest.raises(ValueError, match="pools.backup.zone"):
        spec(pools={"primary": PoolSpec(role="primary", zone="az-east", cidr="172.30.1.0/24"),
                    "backup": PoolSpec(role="backup", zone="az-east", cidr="172.30.2.0/24")})  # fmt: skip


def test_overlapping_subnets_refused() -> None:
    """The pools' subnets may not overlap."""
    with pytest.raises(ValueError, match="overlap"):
        spec(pools={"primary": PoolSpec(role="primary", zone="a", cidr="172.30.0.0/16"),
                    "backup": PoolSpec(role="backup", zone="b", cidr="172.30.2.0/24")})  # fmt: skip


def test_a_departments_requested_host_is_built_sized_and_tagged_as_its(mocked: list) -> None:
    """An approved allocation becomes an instance of the requested size (through the stack's flavor map) with an encrypted volume
    of the requested storage, tagged with the requesting department, not the stack's."""
    alloc = {"id": "al-0123456789ab", "department": "city-public-security", "pool": "primary", "slot": 3, "vcpu": 4, "memory_gib": 8,
             "storage_gib": 120, "expires": "2027-06-30"}  # fmt: skip
    _build(spec(allocations=[alloc], flavors={"4c8g": "s6.xlarge.2"}))
    inst = next(i for t, n, i in mocked if t == "openstack:compute/instance:Instance" and n == "primary-pool-r3")
    vol = next(i for t, n, i in mocked if t == "openstack:blockstorage/volume:Volume" and n == "primary-pool-r3-vol")
    assert inst["name"] == "prim-r3" and inst["flavorName"] == "s6.xlarge.2" and inst["availabilityZone"] == "az-east"
    assert inst["metadata"]["department"] == "city-public-security" and inst["metadata"]["allocation"] == "al-0123456789ab"
    assert inst["metadata"]["classification"] == "sensitive" and inst["metadata"]["expires"] == "2027-06-30"
    assert vol["size"] == 120 and vol["volumeType"] == "encrypted-sm4"
    assert sum(1 for t, _, _ in mocked if t == "openstack:compute/instance:Instance") == 5
