"""Detection rules: Sigma YAML plus our fields, loaded and validated into one typed model.

Our fields sit beside Sigma's in the same file: ``severity`` (informational…critical, default
from ``level``), ``action`` (``alert`` or ``block``; default ``alert``), ``mode`` (``enforce`` or
``shadow``; default ``enforce``) and ``response`` (a playbook name). ``action`` is reserved by
Sigma for collection files, so the loader takes our fields off before pySigma parses the rest.
Rules written for the public Sigma corpus load as they are.

Each rule yields a Lucene query (pySigma's Elasticsearch backend, with a pipeline mapping Sigma
fields to our ECS fields and log sources to conditions) and a condition tree for in-process
matching. A bad file is reported with file, line and field; the other rules still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sigma.backends.elasticsearch import LuceneBackend
from sigma.exceptions import SigmaError
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import AddConditionTransformation, FieldMappingTransformation
from sigma.rule import SigmaRule
from control_plane.resources import folder

RULES_DIR = folder("soc_rules")
Severity = Literal["informational", "low", "medium", "high", "critical"]

# Sigma field names (public corpus, Linux) → our ECS fields. Fields already in ECS pass through.
FIELD_MAP = {
    "CommandLine": "process.command_line", "Image": "process.executable", "ParentImage": "process.parent.name",
    "User": "user.name", "TargetUser": "user.target.name", "SourceIp": "source.ip", "DestinationIp": "destination.ip",
    "DestinationPort": "destination.port", "TargetFilename": "file.path", "comm": "process.name", "exe": "process.executable",
    "Computer": "host.name", "ProcessId": "process.pid",
}  # fmt: skip
# Log sources → the events that belong to them.
LOGSOURCES: dict[tuple[str | None, str | None, str | None], dict[str, Any]] = {
    ("linux", None, "sshd"): {"process.name": "sshd"},
    ("linux", None, "sudo"): {"process.name": "sudo"},
    ("linux", None, "su"): {"process.name": "su"},
    ("linux", None, "auth"): {"event.category": "authentication"},
    ("linux", None, "auditd"): {"event.module": "auditd"},
    ("linux", None, "syslog"): {"event.module": "syslog"},
    ("linux", None, "useradd"): {"event.category": "iam"},
    ("linux", "process_creation", None): {"event.category": "process"},
    ("linux", "user_management", None): {"event.category": "iam"},
    # SigmaHQ's rules/linux: a bare product is the syslog message; the services by the program that logs them
    ("linux", None, None): {"event.module": "syslog"},
    ("linux", "file_event", None): {"event.category": "file"},
    ("linux", "network_connection", None): {"event.category": "network"},
    ("linux", None, "cron"): {"process.name": "cron"},
    ("linux", None, "vsftpd"): {"process.name": "vsftpd"},
    ("linux", None, "clamav"): {"process.name": "clamd"},
    ("linux", None, "guacamole"): {"process.name": "guacd"},
    ("govctl", None, "audit"): {"event.module": "govctl", "event.dataset": "govctl.audit"},
    ("govctl", None, "bastion"): {"event.module": "govctl", "event.dataset": "govctl.bastion"},
    ("govctl", None, "operation"): {"event.module": "govctl"},
}


@dataclass
class ExactLogsource(LogsourceCondition):
    """A log source matched field by field, an unset field included (pySigma's own condition reads unset as "any",
    so ``product: linux`` alone would also claim every ``linux/process_creation`` rule)."""

    def match(self, rule: Any) -> bool:
        """True only for a rule whose product, category and service are exactly these."""
        ls = getattr(rule, "logsource", None)
        return ls is not None and (ls.product, ls.category, ls.service) == (self.product, self.category, self.service)


def pipeline() -> ProcessingPipeline:
    """Field mapping plus one added condition per known log source."""
    items = [ProcessingItem(FieldMappingTransformation(FIELD_MAP), identifier="govctl-ecs-fields")]
    for (product, category, service), cond in LOGSOURCES.items():
        items.append(ProcessingItem(AddConditionTransformation(cond), identifier=f"logsource-{product}-{category}-{service}",
                                    rule_conditions=[ExactLogsource(product=product, category=category, service=service)]))  # fmt: skip
    return ProcessingPipeline(name="govctl", priority=20, items=items)


class OurFields(BaseModel):
    """The fields govctl adds to a Sigma rule."""

    model_config = ConfigDict(extra="forbid")
    severity: Severity
    action: Literal["alert", "block"] = "alert"
    mode: Literal["enforce", "shadow"] = "enforce"
    response: str | None = None
    suppression_s: int = 3600

    @field_validator("response")
    @classmethod
    def _known_playbook(cls, v: str | None) -> str | None:
        from control_plane.playbook.service import available

        if v is not None and v not in available():
            raise ValueError(f"no playbook {v!r}; available: {', '.join(available())}")
        return v


@dataclass
class Rule:
    """A loaded rule: the Sigma rule, our fields, its query and its in-process condition."""

    id: str
    title: str
    path: Path
    sigma: SigmaRule
    ours: OurFields
    query: str
    condition: Any
    tags: list[str] = field(default_factory=list)
    match: Any = None  # the compiled in-process predicate over one event
    bucket_match: Any = None  # the same without its log-source conjunct (set by the inline engine, which checks that once)

    def __post_init__(self) -> None:
        if self.match is None:
            from control_plane.soc.matcher import compile_condition

            self.match = compile_condition(self.condition)

    @property
    def severity(self) -> str:
        """Our severity."""
        return self.ours.severity

    @property
    def fields(self) -> list[str]:
        """The event fields the rule's condition reads (after field mapping and log-source conditions)."""
        out: list[str] = []

        def walk(c: Any) -> None:
            f = getattr(c, "field", None)
            if isinstance(f, str) and f not in out:
                out.append(f)
            for a in getattr(c, "args", None) or []:
                walk(a)

        walk(self.condition)
        return out


@dataclass
class Correlation:
    """A Sigma correlation rule over base rules, evaluated with aggregations in Elasticsearch."""

    id: str
    title: str
    path: Path
    ours: OurFields
    type: str  # event_count | value_count | temporal | temporal_ordered
    rules: list[Rule]
    group_by: list[str]
    timespan_s: int
    op: str  # gte, gt, lte, lt, eq
    count: int
    field: str | None
    generate: bool
    tags: list[str] = field(default_factory=list)

    def holds(self, value: float) -> bool:
        """Does a measured value satisfy the condition?"""
        return {"gte": value >= self.count, "gt": value > self.count, "lte": value <= self.count,
                "lt": value < self.count, "eq": value == self.count}[self.op]  # fmt: skip


@dataclass
class RuleIssue:
    """Why a rule file was refused."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class RuleSet:
    """Every rule that loaded, and every issue with those that did not."""

    rules: list[Rule]
    issues: list[RuleIssue]
    correlations: list[Correlation] = field(default_factory=list)

    @property
    def correlation_only(self) -> set[str]:
        """Base rules that only feed correlations (``generate: false``): they raise no alerts of their own."""
        feeding = {r.id for c in self.correlations if not c.generate for r in c.rules}
        generating = {r.id for c in self.correlations if c.generate for r in c.rules}
        return feeding - generating

    def by_id(self) -> dict[str, Rule]:
        """Rules keyed by id."""
        return {r.id: r for r in self.rules}


def _key_lines(text: str) -> dict[str, int]:
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value}


_LEVEL_TO_SEVERITY = {"informational": "informational", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}


def load_file(path: Path, *, backend: LuceneBackend | None = None, pipe: ProcessingPipeline | None = None) -> Rule:
    """Load one rule file; raise a RuleIssue-carrying ValueError on any problem."""
    text = path.read_text(encoding="utf-8")
    lines = _key_lines(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _issue(path, mark.line + 1 if mark else None, None, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise _issue(path, 1, None, "a rule file holds one mapping (a Sigma rule)")
    ours = _our_fields(path, data, lines, default_level="medium")
    try:
        sigma = SigmaRule.from_dict(data)
        if sigma.id is None:
            raise _issue(path, lines.get("id"), "id", "every rule needs an id (a UUID)")
        ls = sigma.logsource
        if (ls.product, ls.category, ls.service) not in LOGSOURCES:
            raise _issue(path, lines.get("logsource"), "logsource",
                         f"log source product={ls.product} category={ls.category} service={ls.service} has no mapping here; "
                         f"mapped: {', '.join('/'.join(x or '-' for x in k) for k in LOGSOURCES)}")  # fmt: skip
        backend = backend or LuceneBackend(processing_pipeline=pipe or pipeline())
        queries = backend.convert_rule(SigmaRule.from_dict(data))
        processed = SigmaRule.from_dict(data)
        (pipe or pipeline()).apply(processed)
        cond = processed.detection.parsed_condition[0].parsed
    except SigmaError as exc:
        src = getattr(exc, "source", None)
        raise _issue(path, getattr(src, "line", None), None, f"Sigma: {exc}") from None
    return Rule(id=str(sigma.id), title=sigma.title, path=path, sigma=sigma, ours=ours, query=queries[0],
                condition=cond, tags=[str(t) for t in sigma.tags])  # fmt: skip


def _our_fields(path: Path, data: dict[str, Any], lines: dict[str, int], *, default_level: str) -> OurFields:
    """Take our fields off a rule's mapping (Sigma must not see ``action``) and validate them."""
    raw = {k: data.pop(k) for k in ("severity", "action", "mode", "response", "suppression_s") if k in data}
    raw.setdefault("severity", _LEVEL_TO_SEVERITY.get(str(data.get("level", default_level)).lower(), default_level))
    try:
        return OurFields.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = str(e["loc"][0]) if e["loc"] else None
        raise _issue(path, lines.get(key or ""), key, e["msg"].removeprefix("Value error, ")) from None


class RuleFileError(ValueError):
    """Carries a RuleIssue."""

    def __init__(self, issue: RuleIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def _issue(path: Path, line: int | None, fld: str | None, message: str) -> RuleFileError:
    return RuleFileError(RuleIssue(str(path), line, fld, message))


def load_rules(directory: Path | None = None) -> RuleSet:
    """Load every ``*.yml`` in ``directory`` and its sub-folders (SigmaHQ's layout; ``tests/`` folders excluded); collect issues instead of stopping."""
    directory = Path(directory or RULES_DIR)
    if not directory.is_dir():
        return RuleSet([], [RuleIssue(str(directory), None, None, "no such directory")], [])
    pipe = pipeline()
    backend = LuceneBackend(processing_pipeline=pipe)
    rules, issues = [], []
    seen: dict[str, Path] = {}
    deferred = []
    for path in sorted(p for p in directory.rglob("*.yml") if "tests" not in p.relative_to(directory).parts[:-1]):
        if _is_correlation(path):
            deferred.append(path)
            continue
        try:
            rule = load_file(path, backend=backend, pipe=pipe)
        except RuleFileError as exc:
            issues.append(exc.issue)
            continue
        if rule.id in seen:
            issues.append(RuleIssue(str(path), None, "id", f"duplicate id {rule.id} (also in {seen[rule.id]})"))
            continue
        seen[rule.id] = path
        rules.append(rule)
    correlations = []
    for path in deferred:
        try:
            correlations.append(load_correlation(path, rules))
        except RuleFileError as exc:
            issues.append(exc.issue)
    return RuleSet(rules, issues, correlations)


def _is_correlation(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "correlation" in data


def load_correlation(path: Path, base: list[Rule]) -> Correlation:
    """A correlation file, its references resolved against the loaded base rules (by Sigma name, file name or id)."""
    from sigma.correlations import SigmaCorrelationRule

    text = path.read_text(encoding="utf-8")
    lines = _key_lines(text)
    data = yaml.safe_load(text)
    ours = _our_fields(path, data, lines, default_level="high")
    try:
        corr = SigmaCorrelationRule.from_dict(data)
    except SigmaError as exc:
        raise _issue(path, lines.get("correlation"), "correlation", f"Sigma: {exc}") from None
    by_ref: dict[str, Rule] = {}
    for r in base:
        for key in (getattr(r.sigma, "name", None), r.path.stem, r.id):
            if key:
                by_ref[str(key)] = r
    refs = [str(x.reference) for x in corr.rules]
    missing = [x for x in refs if x not in by_ref]
    if missing:
        raise _issue(path, lines.get("correlation"), "correlation.rules", f"unknown rule {missing[0]!r}; refer to a base rule by name, file name or id")
    cond = corr.condition
    kind = corr.type.name.lower() if hasattr(corr.type, "name") else str(corr.type)
    op = cond.op.name.lower() if cond else "gte"
    count = int(cond.count) if cond else len(refs)
    return Correlation(id=str(corr.id), title=corr.title, path=path, ours=ours, type=kind, rules=[by_ref[x] for x in refs],
                       group_by=[FIELD_MAP.get(g, g) for g in (corr.group_by or [])], timespan_s=int(corr.timespan.seconds),
                       op=op, count=count, field=FIELD_MAP.get(cond.fieldref, cond.fieldref) if cond and cond.fieldref else None,
                       generate=bool(getattr(corr, "generate", False)), tags=[str(t) for t in corr.tags])  # fmt: skip
