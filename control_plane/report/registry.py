"""The department registry: departments → information systems → pools, cloud projects, stacks, labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from control_plane.loader import LoadError, load_model
from pydantic import BaseModel, ConfigDict, Field, model_validator

from control_plane.errors import GovctlError
from control_plane.resources import folder

DEFAULT_REGISTRY = folder("monitors") / "registry.yaml"
_SECOND = __import__("datetime").timedelta(seconds=1)


class RegistryError(GovctlError):
    """The registry file is missing or wrong."""

    http_status = 400
    exit_code = 2


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Capacity(_M):
    vcpu: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    storage_gib: float = Field(gt=0)
    physical_cores: int = Field(ge=1)


class Pool(_M):
    name: str
    network_zone: str
    capacity: Capacity


class SystemData(_M):
    """Where a system keeps its data: a PostgreSQL cluster or a file tree on a pool host; each becomes a backup source ``<system>.<name>``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$", description="the data's name within the system (main, uploads)")
    type: Literal["postgres", "files"]
    host: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="the pool host it lives on (a deployed stack's host name)")
    port: int = Field(default=5432, ge=1, le=65535, description="postgres: its port")
    path: Path | None = Field(default=None, description="files: the directory on the host")
    realtime: bool = Field(default=False, description="files: ship every change within seconds (inotify on the host, over SSH)")
    every_s: int = Field(default=3600, ge=60, description="periodic backups (files) or base backups (postgres), in seconds")
    tls_ca: Path | None = Field(default=None, description="postgres: the CA certificate its server certificate is checked against")
    credential: Path | None = Field(default=None, description="postgres: a 0600 file with the replication role's password (default <key_dir>/dr/<source>.pw)")
    role: str = Field(default="govctl_replication", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="postgres: the replication-only role")
    account: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="files: the account the bastion's key for the host logs in as")

    @model_validator(mode="after")
    def _shape(self) -> SystemData:
        if self.type == "files" and self.path is None:
            raise ValueError("files data needs path (a directory on the host)")
        if self.type == "postgres" and self.tls_ca is None:
            raise ValueError("postgres data needs tls_ca (replication from the backup pool runs over TLS only)")
        return self


class System(_M):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    pools: list[str] = []
    cloud_projects: list[str] = []
    stacks: list[str] = []
    labels: dict[str, str] = {}
    level: int | None = Field(default=None, ge=1, le=5, description="网络安全等级保护 level (等保 1-5)")
    rpo_s: float | None = Field(default=None, ge=0, description="recovery point objective: data a disaster may lose, in seconds")
    rto_s: float | None = Field(default=None, gt=0, description="recovery time objective: how long until the system serves again, in seconds")
    data: list[SystemData] = Field(default_factory=list, description="its databases and file trees, backed up as sources <code>.<name>")


class Quota(_M):
    """What a department may hold in one pool (配额): hosts it requested and the bureau approved count against it."""

    vcpu: int = Field(ge=0)
    memory_gib: int = Field(ge=0)
    storage_gib: int = Field(ge=0)
    hosts: int = Field(ge=0)


class Department(_M):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    systems: list[System] = []
    quotas: dict[str, Quota] = Field(default_factory=dict, description="per pool (primary, backup): what requests may add up to; none: no requests")


class DrillPlan(_M):
    """A planned disaster-recovery drill: which systems, when (cron, in the scheduler's time zone), who takes part and who signs it off."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(min_length=1, max_length=200)
    systems: list[str] = Field(min_length=1, description="registered systems' codes or names")
    cron: str = Field(description="when the drill is due, e.g. '0 10 15 */3 *' (10:00 on the 15th of every third month)")
    participants: list[str] = Field(default_factory=list, description="user names of the people taking part")
    sign_off: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$", description="the user who signs the result off: one of the drill's approvers")

    @model_validator(mode="after")
    def _cron(self) -> DrillPlan:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(self.cron)
        except ValueError as exc:
            raise ValueError(f"drill_plans.{self.code}.cron: {exc}") from None
        return self

    def due(self, start: Any, end: Any, tz: Any) -> list[Any]:
        """The times this plan is due in [start, end)."""
        from apscheduler.triggers.cron import CronTrigger

        trig = CronTrigger.from_crontab(self.cron, timezone=tz)
        out, prev = [], None
        t = trig.get_next_fire_time(None, start)
        while t is not None and t < end and len(out) < 1000:
            out.append(t)
            prev = t
            t = trig.get_next_fire_time(prev, prev + _SECOND)
        return out


class Registry(_M):
    network_zones: dict[str, str]
    pools: dict[str, Pool]
    departments: list[Department]
    drill_plans: list[DrillPlan] = Field(default_factory=list, description="disaster-recovery drills planned per system; the monthly report lists planned vs done")

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        for name, p in self.pools.items():
            if p.network_zone not in self.network_zones:
                raise ValueError(f"pools.{name}.network_zone: {p.network_zone!r} is not one of {', '.join(self.network_zones)}")
        codes = [d.code for d in self.departments]
        if len(codes) != len(set(codes)):
            raise ValueError("departments: codes must be unique")
        keys = [k for d in self.departments for s in d.systems for k in (s.code, s.name)]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"systems: codes and names must be unique across departments (a drill names one): {', '.join(dup)}")
        plan_codes = [p.code for p in self.drill_plans]
        if len(plan_codes) != len(set(plan_codes)):
            raise ValueError("drill_plans: codes must be unique")
        known = set(keys)
        for p in self.drill_plans:
            for key in p.systems:
                if key not in known:
                    raise ValueError(f"drill_plans.{p.code}.systems: unknown system {key!r}")
        for d in self.departments:
            for pool in d.quotas:
                if pool not in self.pools:
                    raise ValueError(f"departments.{d.code}.quotas: unknown pool {pool!r}")
            for s in d.systems:
                names = [x.name for x in s.data]
                if len(names) != len(set(names)):
                    raise ValueError(f"departments.{d.code}.systems.{s.code}.data: names must be unique")
                for p in s.pools:
                    if p not in self.pools:
                        raise ValueError(f"departments.{d.code}.systems.{s.code}.pools: unknown pool {p!r}")
        return self

    def department(self, code: str | None) -> Department | None:
        """The department with this code, if registered."""
        return next((d for d in self.departments if d.code == code), None)

    def system(self, key: str) -> tuple[Department, System]:
        """A system by its code or its name (人口库 or population-db), with its department; RegistryError says what exists."""
        for d in self.departments:
            for s in d.systems:
                if key in (s.code, s.name):
                    return d, s
        known = ", ".join(f"{s.code} ({s.name})" for d in self.departments for s in d.systems)
        raise RegistryError(f"no system {key!r} in the registry", hint=f"registered: {known or 'none'} (monitors/registry.yaml, report.registry_file)")


    def plans_for(self, code: str) -> list[DrillPlan]:
        """The drill plans that cover a system (by its code)."""
        _, sysm = self.system(code)
        return [p for p in self.drill_plans if sysm.code in p.systems or sysm.name in p.systems]


def load_registry(path: Path | None = None) -> Registry:
    """Read and validate the registry; errors name the file, the line and the field."""
    try:
        return load_model(path or DEFAULT_REGISTRY, Registry, what="the department registry", hint="see monitors/registry.yaml for the expected shape")
    except LoadError as exc:
        raise RegistryError(exc.message, hint=exc.hint) from None
