"""The control plane's own Prometheus metrics, on a registry of our own (tests build theirs)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

HTTP_SECONDS = Histogram(
    "govctl_http_request_duration_seconds", "API request latency by route", ["method", "route", "status"],
    registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
HTTP_ERRORS = Counter("govctl_http_errors_total", "API responses with status >= 500 by route", ["route"], registry=REGISTRY)
JOB_RUNS = Counter("govctl_job_runs_total", "Scheduled job runs by outcome", ["job", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("govctl_job_duration_seconds", "Scheduled job duration", ["job"], registry=REGISTRY)
AUDIT_APPENDS = Counter("govctl_audit_appends_total", "Audit records appended by this process", registry=REGISTRY)
AUDIT_MIRROR_LAG = Gauge("govctl_audit_mirror_lag_records", "Audit records not yet in Elasticsearch", registry=REGISTRY)
AUDIT_CHAIN_BROKEN = Gauge("govctl_audit_chain_broken", "1 if the last full verification found a broken audit chain", registry=REGISTRY)
AUDIT_LAST_VERIFY = Gauge("govctl_audit_last_verify_timestamp_seconds", "When the audit chain was last verified", registry=REGISTRY)
GATE_DECISIONS = Counter("govctl_gate_decisions_total", "Gate decisions by operation and outcome", ["operation", "decision"], registry=REGISTRY)
GATE_SECONDS = Histogram("govctl_gate_decision_seconds", "Time the gate takes to decide (before running)", registry=REGISTRY,
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
GATE_BREAK_GLASS = Counter("govctl_gate_break_glass_total", "Break-glass operations", registry=REGISTRY)
SOC_SHADOW_MATCHES = Counter("govctl_soc_shadow_matches_total", "Shadow-mode rule matches: what they would have done", ["rule", "would"], registry=REGISTRY)
SOC_DETECTION_LAG = Gauge("govctl_soc_detection_lag_seconds", "How far each rule's detection checkpoint is behind now", ["rule"], registry=REGISTRY)
SOC_STREAM_EVENTS = Counter("govctl_soc_stream_events_total", "Matching events handled by the streaming path", registry=REGISTRY)
SOC_STREAM_OVERFLOW = Counter("govctl_soc_stream_overflow_total", "Matches the streaming path left to scheduled detection (more than one poll takes)", registry=REGISTRY)
SOC_STREAM_UP = Gauge("govctl_soc_stream_up", "1 while the streaming path's last poll succeeded", registry=REGISTRY)
SOC_ENGINE_FINDINGS = Gauge("govctl_soc_engine_findings", "Open SOC engine self-check findings by check (rule_error, detection_lag, mapping_drift, coverage)", ["check"], registry=REGISTRY)
REPORT_DELIVERIES = Counter("govctl_report_deliveries_total", "Report delivery attempts by outcome (delivered, retry, rejected)", ["outcome"], registry=REGISTRY)
REPORT_BUILD_SECONDS = Histogram("govctl_report_build_seconds", "Time to build one month's report", registry=REGISTRY, buckets=(1, 5, 15, 30, 60, 120, 300))
BACKUP_RUNS = Counter("govctl_backup_runs_total", "Backup runs by source, kind (periodic, realtime, base, wal) and outcome", ["source", "kind", "outcome"], registry=REGISTRY)
BACKUP_SECONDS = Histogram("govctl_backup_duration_seconds", "Backup run duration", ["source", "kind"], registry=REGISTRY, buckets=(1, 5, 15, 60, 300, 900, 3600))
BACKUP_BYTES = Counter("govctl_backup_bytes_total", "Bytes read and stored by backups", ["source", "kind", "what"], registry=REGISTRY)
DR_RPO = Gauge("govctl_dr_rpo_seconds", "Age of the newest verified restore point (real-time lag for streaming sources)", ["source"], registry=REGISTRY)
DR_RPO_TARGET = Gauge("govctl_dr_rpo_target_seconds", "Each source's RPO target", ["source"], registry=REGISTRY)
SOC_EVENTS_INGESTED = Counter("govctl_soc_events_ingested_total", "Events through the SOC ingestion path by outcome (indexed, spooled, dead_lettered)", ["outcome"], registry=REGISTRY)
SOC_RULE_ERRORS = Counter("govctl_soc_rule_errors_total", "Detection runs in which a rule failed", ["rule"], registry=REGISTRY)
