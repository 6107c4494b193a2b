"""``ResourcePool``: one pool (primary or backup) of the government cloud, on a chosen target.

A pool has a network and subnet, security groups, compute instances per tier, encrypted
volumes, an object bucket for backups and a data key, all tagged with department and data
classification. Target ``openstack`` (the usual API of a domestic government cloud) uses
pulumi-openstack; target ``local`` (the embedded default) builds the same shape on this machine.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["primary", "backup"]


class TierSpec(BaseModel):
    """A tier of identical instances."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=1, ge=0, le=20)
    flavor: str = "s6.large.2"
    volume_gb: int = Field(default=40, ge=1)
    data_tier: bool = False
    public_ip: bool = False


class PoolSpec(BaseModel):
    """Everything a pool needs, from stack config."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    zone: str = Field(min_length=1, description="availability zone / placement; the backup pool's must differ")
    cidr: str
    tiers: dict[str, TierSpec] = {"app": TierSpec(), "data": TierSpec(data_tier=True)}
    image: str = "kylin-v10-sp3"
    encrypted_volumes: bool = True

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if net.prefixlen > 28:
            raise ValueError("a pool subnet needs at least a /28")
        return v


class AllocationSpec(BaseModel):
    """A host a department requested and the bureau approved (申请 → 审批 → 开通): its own slot in a pool, sized and tagged as its."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    department: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    pool: Role
    slot: int = Field(ge=1, le=200, description="its fixed place in the pool (name and address never move when others are returned)")
    tier: Literal["app", "data"] = "app"
    vcpu: int = Field(ge=1, le=128)
    memory_gib: int = Field(ge=1, le=1024)
    storage_gib: int = Field(ge=1, le=65536)
    expires: str = ""

    @property
    def host(self) -> str:
        return f"{self.pool[:4]}-r{self.slot}"


class StackSpec(BaseModel):
    """The whole stack: who owns it, how sensitive its data is, and its two pools."""

    model_config = ConfigDict(extra="forbid")
    target: Literal["local", "openstack"] = "local"
    department: str = Field(min_length=1)
    classification: Literal["public", "internal", "sensitive", "core"] = "internal"
    pools: dict[Role, PoolSpec]
    ssh_public_key: str = ""
    local_root: str = ""
    local_bridge: str = Field(default="govbr0", pattern=r"^[a-z][a-z0-9]{1,14}$")
    local_prefix: str = Field(default="gc", pattern=r"^[a-z]{1,3}$", description="prefix of the local hosts' namespace names")
    local_gateway: str = "10.77.0.1/16"
    kek_hex: str = ""
    bastion_keys: dict[str, str] = Field(default_factory=dict, description="each host's bastion public key, by host name (govctl fills it in)")
    ssh_sources: list[str] = Field(default_factory=list, description="networks allowed to reach the hosts' SSH; default: only the control plane (the bastion)")
    allocations: list[AllocationSpec] = Field(default_factory=list, description="departments' approved hosts (govctl fills them in from its records)")
    flavors: dict[str, str] = Field(default_factory=dict, description="openstack: the cloud's flavor for a requested size '<vcpu>c<memory>g' "
                                                                      "(default: that name itself)")

    @model_validator(mode="after")
    def _placement(self) -> StackSpec:
        if set(self.pools) != {"primary", "backup"}:
            raise ValueError("pools: exactly one primary and one backup pool")
        if self.pools["primary"].zone == self.pools["backup"].zone:
            raise ValueError(f"pools.backup.zone: the backup pool must not share the primary's placement ({self.pools['primary'].zone})")
        a, b = (ipaddress.ip_network(self.pools[r].cidr) for r in ("primary", "backup"))
        if a.overlaps(b):
            raise ValueError("pools: the primary and backup subnets overlap")
        for name, pool in self.pools.items():
            if pool.role != name:
                raise ValueError(f"pools.{name}.role must be {name!r}")
        return self


def host_names(spec: StackSpec) -> list[str]:
    """The host names a stack's pools will have, in the order they are made (departments' allocations last)."""
    return [f"{pool.role[:4]}-{tier[:4]}-{i}" for pool in spec.pools.values() for tier, ts in pool.tiers.items() for i in range(1, ts.count + 1)] + [
        a.host for a in spec.allocations]


def tags_for(spec: StackSpec, pool: PoolSpec, tier: str | None = None) -> dict[str, str]:
    """The tags every resource carries (department and classification are mandatory)."""
    t = {"department": spec.department, "classification": spec.classification, "pool": pool.role, "zone": pool.zone, "managed-by": "govctl"}
    if tier:
        t["tier"] = tier
    return t


class ResourcePool(pulumi.ComponentResource):
    """A primary or backup resource pool."""

    def __init__(self, name: str, spec: StackSpec, pool: PoolSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("govctl:infra:ResourcePool", name, {"role": pool.role}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.hosts: dict[str, pulumi.Output[str]] = {}
        self.host_keys: dict[str, pulumi.Output[str]] = {}
        if spec.target == "local":
            self._local(name, spec, pool, child)
        else:
            self._openstack(name, spec, pool, child)
        self.register_outputs({"hosts": self.hosts, "bucket": self.bucket, "role": pool.role, "zone": pool.zone})

    def _local(self, name: str, spec: StackSpec, pool: PoolSpec, child: pulumi.ResourceOptions) -> None:
        from infra.local_provider import Directory, Host, PoolKey

        root = f"{spec.local_root}/{pool.role}"
        gw = spec.local_gateway.split("/")[0]
        net = ipaddress.ip_network(pool.cidr)
        addrs = iter(net.hosts())
        next(addrs)  # .1 of each pool subnet stays free
        # SSH only from the control plane's own address (the bastion and the automation key) unless the stack says otherwise
        ssh_from = spec.ssh_sources or [f"{gw}/32"]
        ingress = [*({"source": src, "protocol": "tcp", "port": 22} for src in ssh_from),
                   {"source": str(ipaddress.ip_network(spec.local_gateway, strict=False)), "protocol": "tcp", "port": 9100}]  # fmt: skip
        self.key = PoolKey(f"{name}-key", {"pool": pool.role, "path": f"{root}/keys/pool.key", "kek_hex": spec.kek_hex}, child)
        for tier, ts in pool.tiers.items():
            for i in range(1, ts.count + 1):
                hname = f"{pool.role[:4]}-{tier[:4]}-{i}"
                tags = tags_for(spec, pool, tier)
                vol = Directory(f"{name}-{tier}-{i}-vol", {"path": f"{root}/volumes/{hname}", "kind": "volume", "encrypted": pool.encrypted_volumes,
                                                            "size_gb": ts.volume_gb, "tags": tags}, child)  # fmt: skip
                pg_in = [{"source": str(ipaddress.ip_network(spec.local_gateway, strict=False)), "protocol": "tcp", "port": 5432}] if ts.data_tier else []
                host = Host(f"{name}-{tier}-{i}", {
                    "netns": f"{spec.local_prefix}-{hname}", "address": f"{next(addrs)}/{spec.local_gateway.split('/')[1]}", "gateway": gw,
                    "bridge": spec.local_bridge, "home": f"{root}/hosts/{hname}",
                    "authorized_key": "\n".join(k for k in (spec.ssh_public_key, spec.bastion_keys.get(hname, "")) if k),
                    "ingress": ingress + pg_in, "tier": tier, "data_tier": ts.data_tier, "public_ip": ts.public_ip, "tags": tags,
                    "volume": vol.path,
                }, pulumi.ResourceOptions(parent=self, depends_on=[vol]))  # fmt: skip
                self.hosts[hname] = host.ip
                self.host_keys[hname] = host.host_key
        for a in (a for a in spec.allocations if a.pool == pool.role):
            hname = a.host
            tags = {**tags_for(spec, pool, a.tier), "department": a.department, "allocation": a.id, "vcpu": str(a.vcpu),
                    "memory_gib": str(a.memory_gib), **({"expires": a.expires} if a.expires else {})}  # fmt: skip
            vol = Directory(f"{name}-r{a.slot}-vol", {"path": f"{root}/volumes/{hname}", "kind": "volume", "encrypted": pool.encrypted_volumes,
                                                      "size_gb": a.storage_gib, "tags": tags}, child)  # fmt: skip
            host = Host(f"{name}-r{a.slot}", {
                "netns": f"{spec.local_prefix}-{hname}", "address": f"{net[-1 - a.slot]}/{spec.local_gateway.split('/')[1]}", "gateway": gw,
                "bridge": spec.local_bridge, "home": f"{root}/hosts/{hname}",
                "authorized_key": "\n".join(k for k in (spec.ssh_public_key, spec.bastion_keys.get(hname, "")) if k),
                "ingress": ingress, "tier": a.tier, "data_tier": a.tier == "data", "public_ip": False, "tags": tags, "volume": vol.path,
            }, pulumi.ResourceOptions(parent=self, depends_on=[vol]))  # fmt: skip
            self.hosts[hname] = host.ip
            self.host_keys[hname] = host.host_key
        self.bucket = Directory(f"{name}-bucket", {"path": f"{root}/bucket", "kind": "bucket", "encrypted": True,
                                                   "size_gb": 0, "tags": tags_for(spec, pool)}, child).path  # fmt: skip

    def _openstack(self, name: str, spec: StackSpec, pool: PoolSpec, child: pulumi.ResourceOptions) -> None:
        import pulumi_openstack as os_

        tags = tags_for(spec, pool)
        tag_list = [f"{k}={v}" for k, v in tags.items()]
        network = os_.networking.Network(f"{name}-net", name=f"{name}-net", admin_state_up=True, tags=tag_list, opts=child)
        subnet = os_.networking.Subnet(f"{name}-subnet", network_id=network.id, cidr=pool.cidr, ip_version=4, tags=tag_list, opts=child)
        sg = os_.networking.SecGroup(f"{name}-sg", name=f"{name}-sg", description=f"{pool.role} pool", tags=tag_list, opts=child)
        os_.networking.SecGroupRule(f"{name}-sg-ssh", direction="ingress", ethertype="IPv4", protocol="tcp", port_range_min=22,
                                    port_range_max=22, remote_ip_prefix=pool.cidr, security_group_id=sg.id, opts=child)  # fmt: skip
        self.key = os_.keymanager.SecretV1(f"{name}-key", name=f"{name}-data-key", secret_type="symmetric", algorithm="sm4",
                                           bit_length=128, mode="gcm", metadata=tags, opts=child)  # fmt: skip
        for tier, ts in pool.tiers.items():
            for i in range(1, ts.count + 1):
                hname = f"{pool.role[:4]}-{tier[:4]}-{i}"
                ttags = tags_for(spec, pool, tier)
                vol = os_.blockstorage.Volume(f"{name}-{tier}-{i}-vol", size=ts.volume_gb, availability_zone=pool.zone,
                                              volume_type="encrypted-sm4" if pool.encrypted_volumes else "standard",
                                              metadata={**ttags, "encrypted": str(pool.encrypted_volumes).lower()}, opts=child)  # fmt: skip
                inst = os_.compute.Instance(f"{name}-{tier}-{i}", name=hname, flavor_name=ts.flavor, image_name=pool.image,
                                            availability_zone=pool.zone, security_groups=[sg.name], metadata=ttags,
                                            networks=[os_.compute.InstanceNetworkArgs(uuid=network.id)],
                                            opts=pulumi.ResourceOptions(parent=self, depends_on=[subnet]))  # fmt: skip
                os_.compute.VolumeAttach(f"{name}-{tier}-{i}-attach", instance_id=inst.id, volume_id=vol.id, opts=child)
                if ts.public_ip:
                    fip = os_.networking.FloatingIp(f"{name}-{tier}-{i}-fip", pool="public", tags=[*tag_list, "public=true"], opts=child)
                    os_.compute.FloatingIpAssociate(f"{name}-{tier}-{i}-fipa", floating_ip=fip.address, instance_id=inst.id, opts=child)
                self.hosts[hname] = inst.access_ip_v4
        for a in (a for a in spec.allocations if a.pool == pool.role):  # departments' approved hosts, sized as requested
            atags = {**tags_for(spec, pool, a.tier), "department": a.department, "allocation": a.id, **({"expires": a.expires} if a.expires else {})}
            size = f"{a.vcpu}c{a.memory_gib}g"
            vol = os_.blockstorage.Volume(f"{name}-r{a.slot}-vol", size=a.storage_gib, availability_zone=pool.zone,
                                          volume_type="encrypted-sm4" if pool.encrypted_volumes else "standard",
                                          metadata={**atags, "encrypted": str(pool.encrypted_volumes).lower()}, opts=child)  # fmt: skip
            inst = os_.compute.Instance(f"{name}-r{a.slot}", name=a.host, flavor_name=spec.flavors.get(size, size), image_name=pool.image,
                                        availability_zone=pool.zone, security_groups=[sg.name], metadata=atags,
                                        networks=[os_.compute.InstanceNetworkArgs(uuid=network.id)],
                                        opts=pulumi.ResourceOptions(parent=self, depends_on=[subnet]))  # fmt: skip
            os_.compute.VolumeAttach(f"{name}-r{a.slot}-attach", instance_id=inst.id, volume_id=vol.id, opts=child)
            self.hosts[a.host] = inst.access_ip_v4
        self.bucket = os_.objectstorage.Container(f"{name}-bucket", name=f"{name}-backups", metadata=tags, opts=child).name
