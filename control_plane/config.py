"""Typed configuration: one YAML file, every key with an embedded default.

The file comes from ``--config``, else ``$GOVCTL_CONFIG``, else ``./govctl.yaml`` if present;
with none of them the embedded defaults apply, so ``make run`` needs no file at all.
Relative paths are resolved against the file's directory (or the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from control_plane import loader
from control_plane.errors import ConfigError

ENV_CONFIG = "GOVCTL_CONFIG"
ENV_CACHE = "GOVCTL_CACHE"
DEFAULT_ES_VERSION = "8.19.21"


def cache_dir() -> Path:
    """Where heavy downloads live, outside any clone (``$GOVCTL_CACHE`` or ``~/.cache/govctl``)."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "govctl")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


Port = int
PortNumber = Annotated[int, Field(ge=1, le=65535)]  # a port inside a list


class ElasticsearchConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=9200, ge=1, le=65535)
    version: str = DEFAULT_ES_VERSION
    distribution: Path | None = Field(
        default=None, description="the integ-test-zip; default: <cache>/dist/elasticsearch-<version>.zip"
    )
    java_home: Path | None = Field(default=None, description="a Java 17+ home; default: the machine's JDK 17")
    heap_min_mb: int = Field(default=512, ge=256, le=8192)
    heap_max_mb: int = Field(default=1024, ge=256, le=8192)
    nodes: int = Field(default=1, ge=1, le=5, description="1: one node (discovery.type single-node); 3: a cluster on ports port … port+2, "
                                                          "transport port+100 …, every index with one replica where a second node exists")
    start_timeout_s: float = Field(default=150, gt=0)
    credentials: Path | None = Field(default=None, description="the components' generated passwords (0600); default <key_dir>/elasticsearch.json")
    ca_cert: Path | None = Field(default=None, description="the CA that signs the node's TLS certificate; default <key_dir>/elasticsearch-ca.pem")

    @property
    def url(self) -> str:
        """The HTTPS address of the (first) node (security is always on)."""
        return f"https://{self.host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """Every node's HTTPS address: the client knows them all and moves on when one is down."""
        return [f"https://{self.host}:{self.port + i}" for i in range(self.nodes)]

    def distribution_path(self) -> Path:
        """The zip to unpack, from the configured path or the shared cache."""
        return self.distribution or cache_dir() / "dist" / f"elasticsearch-{self.version}.zip"


class PrometheusConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=9090, ge=1, le=65535)
    binary: str = "prometheus"
    scrape_interval_s: int = Field(default=15, ge=1, le=3600)
    retention: str = Field(default="400d", pattern=r"^\d+[smhdwy]$")
    start_timeout_s: float = Field(default=30, gt=0)

    @property
    def url(self) -> str:
        """The HTTP address of the server."""
        return f"http://{self.host}:{self.port}"


class NodeExporterConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=9100, ge=1, le=65535)
    binary: str = "prometheus-node-exporter"
    start_timeout_s: float = Field(default=15, gt=0)


class AlertmanagerConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=9093, ge=1, le=65535)
    binary: str = "prometheus-alertmanager"
    start_timeout_s: float = Field(default=20, gt=0)


class PostgresHaConfig(_Model):
    members: int = Field(default=1, ge=1, le=3, description="1: one PostgreSQL; 2–3: Patroni members (ports port, port+1 …) on etcd, one leader, streaming replicas")
    rest_port: Port = Field(default=8008, ge=1, le=65535, description="Patroni's REST API of member 1 (member N: +N-1)")
    etcd_port: Port = Field(default=2379, ge=1, le=65535, description="etcd's client port (its peer port is the next)")
    ttl_s: int = Field(default=10, ge=5, le=300, description="the leader key's lifetime: a dead leader is replaced after at most this (plus loop_wait_s)")
    loop_wait_s: int = Field(default=2, ge=1, le=60)
    retry_timeout_s: int = Field(default=4, ge=1, le=120, description="ttl_s ≥ loop_wait_s + 2 × retry_timeout_s")

    @model_validator(mode="after")
    def _timings(self) -> PostgresHaConfig:
        if self.ttl_s < self.loop_wait_s + 2 * self.retry_timeout_s:
            raise ValueError("ttl_s must be at least loop_wait_s + 2 × retry_timeout_s (Patroni's rule)")
        return self


class PostgresConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=5432, ge=1, le=65535, description="the first port tried; the next free one is used")
    bin_dir: Path | None = Field(default=None, description="default: the newest /usr/lib/postgresql/*/bin")
    database: str = Field(default="govctl", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    user: str = Field(default="govctl", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    superuser: str = Field(default="postgres", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="the cluster's superuser (maintenance only)")
    credentials: Path | None = Field(default=None, description="generated passwords of the superuser and the application role (0600); default <key_dir>/postgres.json")
    start_timeout_s: float = Field(default=30, gt=0)
    ha: PostgresHaConfig = Field(default_factory=PostgresHaConfig, description="Patroni members on etcd (the cluster profile: two), the state DB on them")


class ObjectStoreConfig(_Model):
    enabled: bool = Field(default=False, description="SeaweedFS as S3 storage (the cluster profile): a master, volume servers, a filer with the S3 gateway")
    host: str = "127.0.0.1"
    port: Port = Field(default=8333, ge=1, le=65535, description="the S3 endpoint")
    master_port: Port = Field(default=9333, ge=1, le=65535)
    filer_port: Port = Field(default=8888, ge=1, le=65535)
    volume_ports: list[PortNumber] = Field(default_factory=lambda: [8080, 8081], min_length=1, max_length=5, description="one volume server per port")
    replication: str = Field(default="001", pattern=r"^[0-9]{3}$", description="SeaweedFS replication: 001 keeps a second copy on another volume server")
    binary: Path | None = Field(default=None, description="the weed binary; default: <cache>/seaweedfs-<version>/bin/weed (built by make)")
    credentials: Path | None = Field(default=None, description="the S3 identity's generated keys (0600); default <key_dir>/s3.json")
    buckets: list[str] = Field(default_factory=list, description="further buckets created at first start (those dr, audit and report name are created anyway)")
    start_timeout_s: float = Field(default=90, gt=0)

    @property
    def url(self) -> str:
        """The S3 endpoint."""
        return f"http://{self.host}:{self.port}"


class ServicesConfig(_Model):
    run_as: str = Field(default="govctl", description="the unprivileged user services run as when govctl runs as root")
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    node_exporter: NodeExporterConfig = NodeExporterConfig()
    postgres: PostgresConfig = PostgresConfig()
    objectstore: ObjectStoreConfig = Field(default_factory=ObjectStoreConfig, description="S3 object storage (SeaweedFS) for the backup repository")
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig,
                                             description="routes Prometheus' alerts to notify.webhook.url (the same webhook as govctl's notifications)")


class ApiConfig(_Model):
    host: str = "127.0.0.1"
    port: Port = Field(default=8700, ge=1, le=65535)
    standby_ports: list[PortNumber] = Field(default_factory=list, max_length=4,
                                      description="`govctl up` also starts one more control plane (API, console, scheduler standby) on each port, "
                                                  "so one can die (the cluster profile: 8701)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For is believed; default none: the peer address is the source",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address (name each proxy by its address)") from None
        return v

    @property
    def url(self) -> str:
        """The base address of the HTTP API."""
        return f"http://{self.host}:{self.port}"


class StateConfig(_Model):
    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the state DB; default: SQLite under var/state (production: postgresql+psycopg://…)",
    )


class SchedulerConfig(_Model):
    enabled: bool = True
    timezone: str = "Asia/Shanghai"
    misfire_grace_s: int = Field(default=3600, ge=1)
    leader_poll_s: float = Field(default=5.0, gt=0, le=300)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Asia/Shanghai'") from None
        return v


class CryptoConfig(_Model):
    key_dir: Path | None = Field(default=None, description="default: <var_dir>/keys")
    key_passphrase: SecretStr | None = Field(
        default=None,
        description="passphrase wrapping the platform SM2 key; better: $GOVCTL_KEY_PASSPHRASE or passphrase_file",
    )
    passphrase_file: Path | None = Field(
        default=None,
        description="a 0600 file holding the key passphrase, outside var/; default ~/.config/govctl/<id>/key-passphrase, "
        "generated at first start",
    )
    signer_id: str = Field(default="1234567812345678", min_length=1, max_length=8191)
    kdf_iterations: int = Field(default=600_000, ge=100_000)


class AuditConfig(_Model):
    checkpoint_every_records: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: int = Field(default=60, ge=1)
    es_index: str = Field(default="govctl-audit", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    mirror_every_seconds: int = Field(default=5, ge=1)
    anchor_copies: list[Path] = Field(
        default_factory=list,
        description="further copies of the checkpoints (the backup pools of deployed local stacks are added automatically)",
    )
    anchor_file: Path | None = Field(
        default=None,
        description="signed checkpoints are also appended here, off the state DB (put it on the backup pool); default: <var_dir>/audit/checkpoints.jsonl",
    )
    anchor_bucket: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$",
        description="each signed checkpoint is also written once to this bucket of services.objectstore (the cluster profile: govctl-audit)",
    )
    pinned_key_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{16,64}$",
        description="the platform key id the ledger must start from (printed at first start and in every monthly report)",
    )


def _default_stacks() -> dict[str, dict[str, Any]]:
    return {
        "local": {
            "target": "local",
            "department": "city-big-data-bureau",
            "classification": "sensitive",
            "pools": {
                "primary": {"role": "primary", "zone": "local-a", "cidr": "10.77.1.0/24",
                            "tiers": {"app": {"count": 1}, "data": {"count": 1, "data_tier": True}}},
                "backup": {"role": "backup", "zone": "local-b", "cidr": "10.77.2.0/24",
                           "tiers": {"data": {"count": 1, "data_tier": True}}},
            },
        }
    }  # fmt: skip


class DeployConfig(_Model):
    stacks: dict[str, dict[str, Any]] = Field(
        default_factory=_default_stacks,
        description="Pulumi stacks by name: target (local|openstack), department, classification, pools.primary/backup",
    )


class SocConfig(_Model):
    rules_dir: Path | None = Field(default=None, description="the detection rules; default: the project's soc_rules/")
    retention_days: int = Field(default=180, ge=1, description="event indices older than this are deleted (the law asks >= 180)")
    force_short_retention: bool = Field(default=False, description="allow retention_days below 180")
    stream_poll_s: float = Field(default=0.25, ge=0, le=60, description="streaming detection poll interval on the scheduler leader; 0 turns the fast path off")
    lag_target_s: float = Field(default=300, gt=0, description="a rule's detection further behind than this is an engine-health alert")
    synthetic_grace_s: float = Field(default=120, gt=0, description="how long a synthetic coverage event may take to raise its alert")
    context_timeout_s: float = Field(default=0.5, gt=0, le=10, description="how long an inline decision waits for Elasticsearch's correlation context")

    @model_validator(mode="after")
    def _legal_minimum(self) -> SocConfig:
        if self.retention_days < 180 and not self.force_short_retention:
            raise ValueError(
                f"retention_days {self.retention_days} is below the 180 days (6 months) MLPS level 3 asks for logs; "
                "set soc.force_short_retention: true to override"
            )
        return self


class GateConfig(_Model):
    policy_file: Path | None = Field(default=None, description="the gate policy; default: the packaged control_plane/policy.yaml")
    local_peer_roles: dict[str, list[str]] = Field(
        default_factory=lambda: {"root": ["sysadmin"]},
        description="OS users whose CLI on this host acts with these roles without a token ({} to require tokens)",
    )


class ReportConfig(_Model):
    registry_file: Path | None = Field(default=None, description="departments → systems → pools; default: monitors/registry.yaml")
    schedule: str = Field(default="0 6 1 * *", description="cron (scheduler time zone) for building and submitting last month's report")
    misfire_grace_days: int = Field(default=20, ge=1, le=27, description="a run missed while the machine was off still runs this long after its time")
    endpoint: str | None = Field(default=None, description="the province's report endpoint (https URL); nothing is submitted until it is set")
    province_public_key: Path | None = Field(default=None, description="the province's SM2 public key (PEM) the report is sealed for; nothing is submitted until it is set")
    underused_cpu_mean: float = Field(default=0.10, gt=0, lt=1, description="a machine below this mean CPU utilisation…")
    underused_cpu_p95: float = Field(default=0.25, gt=0, lt=1, description="…and below this p95 is listed as under-used")
    retry_initial_s: float = Field(default=30, gt=0, description="first retry delay of a failed delivery (doubles each time)")
    retry_max_s: float = Field(default=3600, gt=0, description="longest delay between delivery attempts")
    timeout_s: float = Field(default=30, gt=0, description="HTTP timeout for Prometheus queries and deliveries")
    archive_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$",
                                       description="every built revision's files are also written once to this bucket of services.objectstore "
                                                   "(the cluster profile: govctl-reports); verify compares them, and a control plane without "
                                                   "the files reads them from there")

    @property
    def endpoint_url(self) -> str:
        """Where reports are POSTed; unset is a configuration error saying what to set."""
        if not self.endpoint:
            raise ConfigError("report.endpoint is not set: there is nowhere to submit the report to",
                              hint="set report.endpoint to the province's URL and report.province_public_key to its SM2 key")  # fmt: skip
        return self.endpoint


class NotifySmtp(_Model):
    host: str | None = Field(default=None, description="the mail relay; unset: no e-mail is sent")
    port: Port = Field(default=25, ge=1, le=65535)
    sender: str = Field(default="govctl@localhost", max_length=254, description="the From address")
    starttls: bool = Field(default=False, description="upgrade with STARTTLS before sending")
    timeout_s: float = Field(default=10, gt=0, le=120)


class NotifyWebhook(_Model):
    url: str | None = Field(default=None, description="where messages are POSTed; unset: no webhook (Alertmanager uses the same URL)")
    format: Literal["generic", "wecom", "dingtalk"] = Field(default="generic", description="generic JSON, or a work-chat bot's markdown body (企业微信 / 钉钉)")
    timeout_s: float = Field(default=10, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("an http(s) URL")
        return v


class NotifyConfig(_Model):
    smtp: NotifySmtp = NotifySmtp()
    webhook: NotifyWebhook = NotifyWebhook()
    every_s: int = Field(default=30, ge=5, le=3600, description="how often new alerts, approvals, breaches and failures are looked for")
    escalate_after_min: int = Field(default=15, ge=1, le=1440, description="a message nobody acknowledged for this long goes to the second person too")
    escalate_to: list[str] = Field(default_factory=list, description="the second people (user names) an unacknowledged message escalates to")
    console_url: str = Field(default="", max_length=200, description="the console's address as people reach it (links in messages); default the API's")


class DrSource(_Model):
    type: Literal["files", "postgres", "control-plane"] = Field(
        description="files: a directory tree; postgres: base backups + streamed WAL of services.postgres; control-plane: govctl's own state "
                    "(a consistent copy of the SQLite state DB, the audit anchors, the keys' public halves, the configuration)")
    path: Path | None = Field(default=None, description="files: the directory to back up")
    every_s: int = Field(default=3600, ge=60, description="periodic backup interval")
    rpo_s: int = Field(default=7200, ge=1, description="RPO target: a verified restore point must never be older than this")
    realtime: bool = Field(default=False, description="files: also watch the tree (inotify) and ship changes continuously")
    host: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,62}$",
                             description="a pool host (a deployed stack's) the data lives on: postgres is reached there over TLS as a replication-only "
                                         "role, files over SSH with the bastion's key for that host; none: this host (services.postgres, a local path)")
    port: int = Field(default=5432, ge=1, le=65535, description="postgres on a pool host: its port")
    role: str = Field(default="govctl_replication", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="postgres on a pool host: the replication-only role")
    tls_ca: Path | None = Field(default=None, description="postgres on a pool host: the CA certificate its server certificate is checked against "
                                                          "(sslmode=verify-full; required)")
    credential: Path | None = Field(default=None, description="postgres on a pool host: a 0600 file holding the role's password; "
                                                              "default <key_dir>/dr/<source>.pw")
    account: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="files on a pool host: the account the bastion's key logs in as")
    system: str | None = Field(default=None, description="the registered system this data belongs to (sources from the registry)")

    @model_validator(mode="after")
    def _path(self) -> DrSource:
        if self.type == "files" and self.path is None:
            raise ValueError("a files source needs path")
        if self.host is not None and self.type == "control-plane":
            raise ValueError("the control-plane source is this host's own state; it has no host")
        if self.host is not None and self.type == "postgres" and self.tls_ca is None:
            raise ValueError("postgres on a pool host needs tls_ca: the certificate of the CA that signed its server certificate (replication runs over TLS only)")
        if self.host is not None and self.type == "files":
            _remote_path(self.path)
        return self


def _remote_path(p: Path | None) -> None:
    """A path on a pool host: absolute, normalised, printable."""
    s = str(p)
    if not s.startswith("/") or any(part in ("..", ".") for part in s.split("/")) or any(ord(ch) < 32 or ch == "\x7f" for ch in s) or s == "/":
        raise ValueError(f"path on a pool host must be an absolute directory below / without '.', '..' or control characters, got {s!r}")


class Retention(_Model):
    keep_last: int = Field(default=7, ge=1)
    keep_daily: int = Field(default=14, ge=0)
    keep_weekly: int = Field(default=8, ge=0)
    keep_monthly: int = Field(default=12, ge=0)
    keep_yearly: int = Field(default=3, ge=0)
    destroyed_min_days: int = Field(default=180, ge=0, le=36500, description="a system whose stack is gone: its backups are kept at least this many days "
                                                                            "after the newest before 数据安全销毁 (dr destroy) may remove them")


def _default_dr_sources() -> dict[str, DrSource]:
    return {"reports": DrSource(type="files", path=Path("var/reports"), every_s=3600, rpo_s=60, realtime=True),
            "state-db": DrSource(type="postgres", every_s=86400, rpo_s=300),
            "control-plane": DrSource(type="control-plane", every_s=3600, rpo_s=7200)}  # fmt: skip


class DrConfig(_Model):
    repository: Path | None = Field(default=None, description="the backup repository (mount it from the backup pool); default: <var_dir>/dr/repo")
    copies: list[Path] = Field(default_factory=list, description="further repositories every snapshot is copied to (多副本)")
    objects: Literal["local", "s3"] = Field(default="local", description="local: the repository's objects are files under dr.repository (which then "
                                                                         "holds only the lock and bookkeeping for s3); s3: objects in dr.bucket on services.objectstore")
    bucket: str = Field(default="govctl-backup", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$", description="the repository's bucket when dr.objects is s3")
    copy_buckets: list[str] = Field(default_factory=list, description="further buckets every snapshot is copied to (多副本), on the same object store")
    copy_bandwidth_mib_s: float | None = Field(default=None, gt=0, description="limit for copies between pools")
    passphrase_file: Path | None = Field(default=None, description="the repository passphrase; default: a random one, 0600, in the key directory")
    kdf_iterations: int = Field(default=200_000, ge=100_000)
    retention: Retention = Retention()
    check_subset_pct: float = Field(default=10, gt=0, le=100, description="share of packs the daily check reads (rotating)")
    wal_streaming: bool = Field(default=True, description="the scheduler leader streams WAL of postgres sources and watches real-time file sources")
    sources: dict[str, DrSource] = Field(default_factory=_default_dr_sources)


class BastionZone(_Model):
    undecidable: Literal["allow", "alert", "require_approval", "block"] = Field(
        default="require_approval", description="a line whose effect only its run would show (a script file, code from a pipe, an unparsable line)")
    interactive: Literal["allow", "alert", "require_approval", "block"] = Field(
        default="alert", description="a program whose own commands the bastion cannot see (a nested shell, an editor, a pager, a REPL, su/sudo -i)")


class BastionAcl(_Model):
    networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128", "10.0.0.0/8"], description="source networks people may log in from")

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        out = []
        for n in v:
            try:
                out.append(str(ipaddress.ip_network(n, strict=False)))
            except ValueError:
                raise ValueError(f"{n!r} is not a network: write an address or a prefix such as 10.20.0.0/16") from None
        return out
    hours: str = Field(default="00:00-24:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$", description="login hours, Asia/Shanghai")
    max_sessions: int = Field(default=10, ge=1, le=1000, description="concurrent sessions per person")


class BastionConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = Field(default=2222, ge=1, le=65535)
    host_key: Path | None = Field(default=None, description="the gateway's own SSH host key; default <key_dir>/bastion/ssh_host_ed25519_key (made on first start)")
    recordings: Path | None = Field(default=None, description="sealed session recordings; default <var_dir>/bastion/recordings")
    idle_timeout_s: int = Field(default=900, ge=5, le=86400, description="a session with no input for this long ends (GB/T 22239 8.1.4.1 b)")
    max_session_s: int = Field(default=28800, ge=5, le=7 * 86400, description="the longest a session may last")
    approval_timeout_s: int = Field(default=600, ge=5, le=86400, description="how long a paused command waits for its approval")
    chunk_s: float = Field(default=1.0, gt=0, le=10, description="a recording chunk is sealed at least this often (what a crash can lose)")
    acl: BastionAcl = BastionAcl()
    zones: dict[str, BastionZone] = Field(default_factory=dict, description="per zone (a pool's placement); zones not listed use default_zone")
    default_zone: BastionZone = BastionZone()

    def zone(self, name: str) -> BastionZone:
        """The policy of a host's zone."""
        return self.zones.get(name, self.default_zone)


# Profiles: defaults laid under the configuration file (what the file says wins). "single" is the
# embedded default (one process of each engine); "cluster" runs the engines the way a city runs them:
# losing any one node loses nothing.
PROFILES: dict[str, dict[str, Any]] = {
    "single": {},
    "cluster": {"services": {"elasticsearch": {"nodes": 3, "heap_min_mb": 256, "heap_max_mb": 512}, "postgres": {"ha": {"members": 2}},
                             "objectstore": {"enabled": True}},
                "dr": {"objects": "s3", "copy_buckets": ["govctl-backup-copy"]}, "audit": {"anchor_bucket": "govctl-audit"},
                "report": {"archive_bucket": "govctl-reports"}, "api": {"standby_ports": [8701]}},
}
ENV_PROFILE = "GOVCTL_PROFILE"


class Settings(_Model):
    profile: Literal["single", "cluster"] = Field(default="single", description="single: one process per engine; cluster: three Elasticsearch nodes …")
    var_dir: Path = Path("var")
    services: ServicesConfig = ServicesConfig()
    api: ApiConfig = ApiConfig()
    state: StateConfig = StateConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    crypto: CryptoConfig = CryptoConfig()
    audit: AuditConfig = AuditConfig()
    gate: GateConfig = GateConfig()
    deploy: DeployConfig = DeployConfig()
    soc: SocConfig = SocConfig()
    report: ReportConfig = ReportConfig()
    dr: DrConfig = DrConfig()
    bastion: BastionConfig = BastionConfig()
    notify: NotifyConfig = NotifyConfig()

    # Where relative paths are anchored; set by load(), not read from the file.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    source: str = Field(default="embedded defaults", exclude=True)

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the config's base directory."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def var(self) -> Path:
        """The absolute runtime directory (state, services' data and logs, keys)."""
        return self.path(self.var_dir)

    @property
    def key_dir(self) -> Path:
        """Where the platform keys live."""
        return self.path(self.crypto.key_dir) if self.crypto.key_dir else self.var / "keys"

    def key_passphrase_file(self) -> Path:
        """Where the platform key's passphrase is kept when neither the environment nor the file gives it: never beside the key."""
        if self.crypto.passphrase_file:
            return self.path(self.crypto.passphrase_file)
        import hashlib

        ident = hashlib.sha256(str(self.var).encode()).hexdigest()[:12]
        return Path.home() / ".config" / "govctl" / ident / "key-passphrase"

    @property
    def anchor_file(self) -> Path:
        """The off-database copy of the audit checkpoints."""
        return self.path(self.audit.anchor_file) if self.audit.anchor_file else self.var / "audit" / "checkpoints.jsonl"

    def state_url(self) -> str:
        """The SQLAlchemy URL of the state database (with Patroni members: all of them, whichever is the leader now)."""
        if self.state.url is not None:
            return self.state.url.get_secret_value()
        if self.services.postgres.ha.members > 1:
            return self.postgres_url()
        return f"sqlite:///{self.var / 'state' / 'govctl.db'}"

    def buckets(self) -> list[str]:
        """Every bucket the object store must hold: the repository's, its copies, the audit anchors', the report archive's."""
        named = [*self.services.objectstore.buckets, *([self.dr.bucket] if self.dr.objects == "s3" else []), *self.dr.copy_buckets,
                 self.audit.anchor_bucket, self.report.archive_bucket]  # fmt: skip
        return list(dict.fromkeys(b for b in named if b))

    def s3_credentials_path(self) -> Path:
        """The object store's S3 identity (generated, 0600)."""
        c = self.services.objectstore
        return self.path(c.credentials) if c.credentials else self.key_dir / "s3.json"

    def s3_credentials(self) -> dict[str, str]:
        """The S3 access and secret key (generated on first use, 0600)."""
        from control_plane.credentials import load_generated

        return load_generated(self.s3_credentials_path(), ("access_key", "secret_key"))

    def es_credentials_path(self) -> Path:
        """The Elasticsearch components' passwords (0600)."""
        c = self.services.elasticsearch
        return self.path(c.credentials) if c.credentials else self.key_dir / "elasticsearch.json"

    def es_ca_path(self) -> Path:
        """The CA certificate the Elasticsearch clients trust."""
        c = self.services.elasticsearch
        return self.path(c.ca_cert) if c.ca_cert else self.key_dir / "elasticsearch-ca.pem"

    def pg_credentials_path(self) -> Path:
        """Our PostgreSQL cluster's generated passwords (0600)."""
        c = self.services.postgres
        return self.path(c.credentials) if c.credentials else self.key_dir / "postgres.json"

    def pg_password(self, role: str = "app") -> str:
        """The generated password of our PostgreSQL cluster's ``app`` role or ``superuser``."""
        from control_plane.credentials import pg_credentials

        return pg_credentials(self.pg_credentials_path())[role]

    def postgres_url(self, port: int | None = None, database: str | None = None) -> str:
        """A URL for our own PostgreSQL cluster as the application role (port as actually started)."""
        from urllib.parse import quote

        pg = self.services.postgres
        auth = f"{pg.user}:{quote(self.pg_password('app'), safe='')}"
        if pg.ha.members > 1 and port is None:
            # libpq tries each member and keeps the one that accepts writes: the leader, wherever it is now
            hosts = "&".join(f"host={pg.host}:{pg.port + i}" for i in range(pg.ha.members))  # SQLAlchemy's form of libpq's host list
            return f"postgresql+psycopg://{auth}@/{database or pg.database}?{hosts}&target_session_attrs=read-write&connect_timeout=3"
        return f"postgresql+psycopg://{auth}@{pg.host}:{port or pg.port}/{database or pg.database}"


def load(path: str | os.PathLike[str] | None = None, *, overrides: dict[str, Any] | None = None) -> Settings:
    """Load and validate the configuration; refuse a bad file with key path, value and what is allowed."""
    chosen = path or os.environ.get(ENV_CONFIG)
    if chosen is None and Path("govctl.yaml").is_file():
        chosen = "govctl.yaml"
    data: dict[str, Any] = {}
    lines: dict[tuple[Any, ...], int] = {}
    base = Path.cwd()
    source = "embedded defaults"
    if chosen is not None:
        p = Path(chosen).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist", hint=f"create it, or unset {ENV_CONFIG} to use the defaults")
        loaded, lines = loader.read(p, what="config file", hint=f"check {ENV_CONFIG}")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
        base = p.resolve().parent
        source = str(p.resolve())
    if overrides:
        data = _deep_merge(data, overrides)
    profile = data.get("profile") or os.environ.get(ENV_PROFILE) or "single"
    if profile in PROFILES:  # an unknown name is left for validation to refuse with the allowed ones
        data = {**_deep_merge(PROFILES[profile], data), "profile": profile}
    try:
        return Settings.model_validate({**data, "base_dir": base, "source": source})
    except ValidationError as exc:
        issues = loader.issues_of(exc, source, lines, model=Settings)
        raise loader.LoadError("; ".join(issues), hint="see `govctl config show` for every key and its default", issues=issues) from None


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def effective(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked as ``****``."""

    def mask(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return "****"
        if isinstance(v, dict):
            return {k: mask(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    raw = settings.model_dump(mode="python")
    return mask(raw)

