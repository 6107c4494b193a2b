"""Inline decisions: may this operation run? (``soc.evaluate``)

The operation gate calls ``InlineEngine.evaluate`` before anything runs. Detection rules are
loaded by the SOC engine; with none loaded the decision is ``allow`` and says so, so nobody
mistakes an empty engine for a clean bill of health.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from control_plane.gate.decision import SESSION_RANK, Action, Decision, OperationEvent, SocUnavailable  # noqa: F401 - re-exported for the engine's callers
from control_plane.soc.exceptions import excepted



def operation_events(op: OperationEvent) -> list[dict[str, Any]]:
    """The ECS events an operation amounts to: the operation itself, and one per command any shell text in it would run."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    now = datetime.now(timezone.utc)
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    off_hours = local.weekday() >= 5 or not 8 <= local.hour < 20
    base: dict[str, Any] = {
        "@timestamp": now.isoformat().replace("+00:00", "Z"),
        "event": {"kind": "event", "module": "govctl", "dataset": "govctl.operation", "category": ["configuration"], "action": op.operation},
        "user": {"name": op.actor, "roles": list(op.roles)},
        "source": {"address": op.source, **({"ip": op.source} if op.source[:1].isdigit() else {})},
        "govctl": {"operation": op.operation, "target": op.target, "params": op.params, "off_hours": off_hours,
                   **({"records": op.params["records"]} if isinstance(op.params.get("records"), int) else {})},
    }  # fmt: skip
    events = [base]
    for text in shell_texts(op):
        for c in analyze_cached(text).commands:
            lines = [c.line]
            if "/" in c.argv[0]:  # /bin/rm is rm: rules written for the bare name see it too
                lines.append(" ".join([c.name, *c.argv[1:], *(f"{op} {t}" for op, t in c.redirects)]))
            for line in lines:
                events.append({**base, "event": {**base["event"], "category": ["process"], "type": ["start"]},
                               "process": {"command_line": line, "args": c.argv, "executable": c.argv[0], "name": c.name}})  # fmt: skip
        for line in analyze_cached(text).pipelines:  # the whole flow, for rules about what feeds what (curl … | sh)
            events.append({**base, "event": {**base["event"], "category": ["process"], "type": ["start"]},
                           "process": {"command_line": line, "name": line.split(" ", 1)[0].rsplit("/", 1)[-1]}})  # fmt: skip
    return events


SHELL_PARAMS = ("command", "script", "cmd")


def shell_texts(op: OperationEvent) -> list[str]:
    """The shell text an operation carries (a bastion command, a script), if any."""
    return [op.params[k] for k in SHELL_PARAMS if isinstance(op.params.get(k), str)]


@lru_cache(maxsize=1024)
def analyze_cached(text: str) -> Any:
    """The shell analysis of a text, once per text (decisions ask for it more than once)."""
    from control_plane.soc.shell import analyze

    return analyze(text)


def shell_findings(op: OperationEvent) -> list[Any]:
    """What the operation's shell text leaves to run time: each finding requires approval (or blocks)."""
    return [f for text in shell_texts(op) for f in analyze_cached(text).findings]


@dataclass
class InlineEngine:
    """Rules are callables returning a Decision or None; the strictest answer wins."""

    rules: list[tuple[str, Callable[[OperationEvent], Decision | None]]] = field(default_factory=list)
    exceptions: Callable[[], list[dict[str, Any]]] | None = None  # active exceptions, looked up per decision

    @classmethod
    def from_rules(cls, ruleset: Any) -> InlineEngine:
        """Single-event rules, matched in process against an operation's events.

        A matching ``block`` rule blocks; a matching ``alert`` rule requires approval; a rule in
        ``shadow`` mode only records what it would have done. Rules are grouped by log source, so
        each event is tested against a few log-source conditions and then only their rules.
        """
        from control_plane.soc.rules import LOGSOURCES

        buckets: dict[tuple[Any, ...], list[Any]] = {}
        for r in ruleset.rules:
            ls = r.sigma.logsource
            buckets.setdefault((ls.product, ls.category, ls.service), []).append(r)
        prefilters = []
        for key, rules in buckets.items():
            cond = LOGSOURCES[key]
            prefilters.append((_prefilter(cond), rules))
            for r in rules:  # the bucket's test already holds for its events: each rule skips that conjunct
                r.bucket_match = _without_logsource(r, cond)
        engine = cls([(r.id, _single(r)) for r in ruleset.rules])
        engine.buckets = prefilters
        return engine

    buckets: list[tuple[Callable[[dict[str, Any]], bool], list[Any]]] | None = None
    context: Any = None  # ContextRules: correlation rules answered by Elasticsearch

    def evaluate(self, event: OperationEvent) -> Decision:
        """Match the event against every loaded rule; block beats require_approval beats allow.

        In-process rules answer first; correlation context then comes from Elasticsearch. If it
        cannot be reached the decision says so (``degraded``) and every enforced block-capable
        context rule counts as require_approval: an unanswered question is never a silent allow.
        """
        if not self.rules and self.context is None and not shell_findings(event):
            return Decision("allow", reasons=("no rules loaded",), session_action="allow")
        excs = self.exceptions() if self.exceptions else []
        session: list[str] = []  # each contribution's session verdict (alert rules let a line run with an alert)
        if self.buckets is not None:
            best, matched, reasons = self._evaluate_bucketed(event, excs, session)
        else:
            best, matched, reasons = self._evaluate_plain(event, session)
        kinds = []
        for f in shell_findings(event):  # what the text leaves to run time is never a silent allow
            matched.append(f"govctl.shell.{f.kind}")
            reasons.append(f.reason)
            best = _stricter(best, f.action)
            kinds.append(f.kind)
            if f.action == "block":
                session.append("block")
        degraded = False
        if self.context is not None and self.context.rules:
            best, degraded = self._with_context(event, excs, best, matched, reasons, session)
        n = len(self.rules) + (len(self.context.rules) if self.context else 0)
        return Decision(best, tuple(matched), tuple(reasons) or (f"no rule matched ({n} loaded)",), degraded,  # type: ignore[arg-type]
                        session_action=max(session, key=SESSION_RANK.__getitem__, default="allow"), findings=tuple(kinds))  # type: ignore[arg-type]

    def _with_context(self, op: OperationEvent, excs: list[dict[str, Any]], best: str, matched: list[str], reasons: list[str],
                      session: list[str]) -> tuple[str, bool]:  # fmt: skip
        from control_plane.soc.context import ContextUnavailable

        assert self.context is not None
        try:
            hits = self.context.hits(op)
        except ContextUnavailable as exc:
            reasons.append(f"correlation context unavailable ({exc}); decided on the {len(self.rules)} in-process rules only")
            for c in self.context.block_capable:
                matched.append(c.id)
                reasons.append(f"{c.title}: could not be checked, so it requires approval instead of blocking")
                best = _stricter(best, "require_approval")
                session.append("require_approval")
            return best, True
        base = operation_events(op)[0] if excs and hits else {}
        for h in hits:
            exc_row = excepted(excs, h.rule.id, base) if excs else None
            if exc_row is not None:
                reasons.append(f"{h.rule.title}: waived by exception {exc_row['id']} ({exc_row['reason']}, owner {exc_row['owner']})")
                continue
            group = ", ".join(f"{k}={v}" for k, v in h.group.items())
            d = _decision(h.rule, op, {}, detail=f"{group}: {h.value:g} in {h.rule.timespan_s // 60 or h.rule.timespan_s} "
                                                  f"{'min' if h.rule.timespan_s >= 60 else 's'}")  # fmt: skip
            matched.extend(d.matched_rules)
            reasons.extend(d.reasons)
            best = _stricter(best, d.action)
            # A correlation that holds says something about the person or the address, not about this one line:
            # in a session their next lines wait for a person (or stay blocked), they do not merely run with an alert.
            session.append(d.session_action if d.session_action in ("allow", "block") else "require_approval")
        return best, False

    def _evaluate_plain(self, event: OperationEvent, session: list[str]) -> tuple[str, list[str], list[str]]:
        best, matched, reasons = "allow", [], []
        events: list[dict[str, Any]] | None = None
        for name, rule in self.rules:
            if getattr(rule, "takes_events", False):
                if events is None:
                    events = operation_events(event)  # once per decision, shared by every rule
                d = rule(event, events)
            else:
                d = rule(event)
            if d is None:
                continue
            matched.append(name)
            reasons.extend(d.reasons)
            best = _stricter(best, d.action)
            session.append(d.session_action or d.action)
        return best, matched, reasons

    def _evaluate_bucketed(self, op: OperationEvent, excs: list[dict[str, Any]], session: list[str]) -> tuple[str, list[str], list[str]]:
        best, matched, reasons = "allow", [], []
        hits: dict[str, dict[str, Any]] = {}
        waived: list[str] = []
        for ev in operation_events(op):
            for applies, rules in self.buckets or []:
                if applies(ev):
                    for r in rules:
                        if r.id not in hits and (r.bucket_match or r.match)(ev):
                            exc = excepted(excs, r.id, ev) if excs else None
                            if exc is None:
                                hits[r.id] = ev
                            elif r.id not in waived:
                                waived.append(r.id)
                                reasons.append(f"{r.title}: waived by exception {exc['id']} ({exc['reason']}, owner {exc['owner']}, until {exc['expires'][:10]})")
        for r_id, ev in hits.items():
            d = _decision(self._rule(r_id), op, ev)
            matched.extend(d.matched_rules)
            reasons.extend(d.reasons)
            best = _stricter(best, d.action)
            session.append(d.session_action or d.action)
        return best, matched, reasons

    def _rule(self, rule_id: str) -> Any:
        for _, rules in self.buckets or []:
            for r in rules:
                if r.id == rule_id:
                    return r
        raise KeyError(rule_id)


def _without_logsource(rule: Any, cond: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """The rule's predicate with the log-source conjuncts the bucket prefilter already checked removed.

    Only top-level AND children of the form ``field == value`` that equal the bucket's condition are
    dropped (a conjunct known to be true); anything else keeps the full predicate.
    """
    from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression
    from sigma.types import SigmaString

    from control_plane.soc.matcher import compile_condition

    c = rule.condition
    if not isinstance(c, ConditionAND):
        return rule.match
    want = {f: str(v).lower() for f, v in cond.items()}

    def implied(a: Any) -> bool:
        return (isinstance(a, ConditionFieldEqualsValueExpression) and a.field in want and isinstance(a.value, SigmaString)
                and not a.value.contains_special() and str(a.value).lower() == want[a.field])  # fmt: skip

    kept = [a for a in c.args if not implied(a)]
    if len(kept) == len(c.args) or not kept:
        return rule.match
    if len(kept) == 1:
        return _fast(kept[0]) or compile_condition(kept[0])
    return compile_condition(ConditionAND(kept))


def _fast(cond: Any) -> Callable[[dict[str, Any]], bool] | None:
    """Most rules are one field's regular expressions (``re`` or ``1 of sel*`` of them): test them without the condition tree."""
    from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionOR
    from sigma.types import SigmaRegularExpression

    from control_plane.soc.matcher import _MISSING, field_getter, lower_regex

    items = cond.args if isinstance(cond, ConditionOR) else [cond]
    items = [a.args[0] if not isinstance(a, ConditionFieldEqualsValueExpression) and len(getattr(a, "args", [])) == 1 else a for a in items]
    if not items or not all(isinstance(a, ConditionFieldEqualsValueExpression) and isinstance(a.value, SigmaRegularExpression) for a in items):
        return None
    if len({a.field for a in items}) != 1:
        return None
    get = field_getter(items[0].field)
    tests = [lower_regex(a.value) for a in items]

    def check(ev: dict[str, Any]) -> bool:
        v = get(ev)
        if v is _MISSING or v is None:
            return False
        vals = v if isinstance(v, list) else [v]
        return any(t(str(x).lower()) for x in vals if x is not None for t in tests)

    return check


def _prefilter(cond: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """A log source's event condition as a fast predicate (case-insensitive equality; lists match any)."""
    from control_plane.soc.matcher import field_getter

    want = [(field_getter(f), str(v).lower()) for f, v in cond.items()]

    def applies(ev: dict[str, Any]) -> bool:
        for get, v in want:
            actual = get(ev)
            if isinstance(actual, list):
                if not any(str(a).lower() == v for a in actual):
                    return False
            elif str(actual).lower() != v:
                return False
        return True

    return applies


_RANK = {"allow": 0, "require_approval": 1, "block": 2}


def _stricter(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def _decision(rule: Any, op: OperationEvent, hit: dict[str, Any], *, detail: str | None = None) -> Decision:
    from control_plane import metrics

    what = "block" if rule.ours.action == "block" else "require_approval"
    detail = detail or hit.get("process", {}).get("command_line") or op.operation
    if rule.ours.mode == "shadow":
        metrics.SOC_SHADOW_MATCHES.labels(rule=rule.id, would=what).inc()
        return Decision("allow", (rule.id,), (f"shadow: {rule.title} would {what.replace('_', ' ')} ({detail})",), session_action="allow")
    return Decision(what, (rule.id,), (f"{rule.title} ({detail})",), session_action="block" if what == "block" else "alert")


def _single(rule: Any) -> Callable[[OperationEvent], Decision | None]:
    """One rule as a callable on an operation (for callers holding a single rule)."""

    def check(op: OperationEvent) -> Decision | None:
        hit = next((ev for ev in operation_events(op) if rule.match(ev)), None)
        return None if hit is None else _decision(rule, op, hit)

    return check
