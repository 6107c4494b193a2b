r"""Evaluate a pySigma condition tree against one event, in process (the inline decision's fast path).

Semantics follow Sigma: string values match case-insensitively with ``*``/``?`` wildcards
(``contains``/``startswith``/``endswith`` arrive as wildcards from pySigma), ``|re`` matches the
whole value as Elasticsearch's Lucene regexps do (write ``.*x.*`` to search; use the syntax both
share: no ``\s``, ``\b`` or ``$``), lists match if any element matches, a missing field matches
only null.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR, ConditionValueExpression
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

_MISSING = object()


def get_field(event: dict[str, Any], path: str) -> Any:
    """A dotted field from a nested (or flat-dotted) event; lists of objects are searched element-wise."""
    if path in event:
        return event[path]
    cur: Any = event
    for i, part in enumerate(path.split(".")):
        if isinstance(cur, list):
            vals = [get_field(x, ".".join(path.split(".")[i:])) for x in cur if isinstance(x, dict)]
            vals = [v for v in vals if v is not _MISSING]
            return vals if vals else _MISSING
        if not isinstance(cur, dict) or part not in cur:
            rest = ".".join(path.split(".")[i:])
            return cur.get(rest, _MISSING) if isinstance(cur, dict) else _MISSING
        cur = cur[part]
    return cur


def field_getter(path: str) -> Callable[[dict[str, Any]], Any]:
    """``get_field`` for one path, with the path split once; plain nested dicts take the fast path."""
    parts = tuple(path.split("."))

    def get(event: dict[str, Any]) -> Any:
        cur: Any = event
        for p in parts:
            if type(cur) is dict and p in cur:
                cur = cur[p]
            else:
                return get_field(event, path)  # lists, flat dotted keys: the general walk
        return cur

    return get


@lru_cache(maxsize=4096)
def _wild_regex(parts: tuple[Any, ...]) -> re.Pattern[str]:
    rx = []
    for p in parts:
        if p is SpecialChars.WILDCARD_MULTI:
            rx.append(".*")
        elif p is SpecialChars.WILDCARD_SINGLE:
            rx.append(".")
        else:
            rx.append(re.escape(str(p)))
    return re.compile("".join(rx), re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def _regex(rx: str, flags: int) -> re.Pattern[str]:
    return re.compile(rx, flags)


def _value_match(value: Any, actual: Any) -> bool:
    if isinstance(actual, list):
        return any(_value_match(value, a) for a in actual)
    if isinstance(value, SigmaNull):
        return actual is _MISSING or actual is None
    if actual is _MISSING or actual is None:
        return False
    if isinstance(value, SigmaString):
        if isinstance(actual, (dict,)):
            return False
        return _wild_regex(tuple(value.s)).fullmatch(str(actual)) is not None
    if isinstance(value, SigmaRegularExpression):
        flags = re.IGNORECASE  # as Elasticsearch with our lowercase normalizer (see _compile_value)
        for f in getattr(value, "flags", ()) or ():
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(getattr(f, "value", str(f))[:1].lower(), 0)  # noqa: E501
        # whole-value match, as Elasticsearch's (Lucene) regexp queries do: write ".*x.*" to search
        rx = value.regexp if isinstance(value.regexp, str) else (getattr(value.regexp, "original", None) or str(value.regexp))
        return _regex(rx, flags).fullmatch(str(actual)) is not None
    if isinstance(value, SigmaNumber):
        try:
            return float(actual) == float(value.number)
        except (TypeError, ValueError):
            return str(actual) == str(value.number)
    if isinstance(value, SigmaBool):
        return bool(actual) == value.boolean
    if isinstance(value, SigmaCompareExpression):
        try:
            a, n = float(actual), float(value.number.number)
        except (TypeError, ValueError):
            return False
        op = value.op
        return {"lt": a < n, "lte": a <= n, "gt": a > n, "gte": a >= n}[op.name.lower()]
    if isinstance(value, SigmaCIDRExpression):
        try:
            return ipaddress.ip_address(str(actual)) in value.network
        except ValueError:
            return False
    return str(actual) == str(value)


def _strings(event: Any) -> list[str]:
    if isinstance(event, dict):
        return [s for v in event.values() for s in _strings(v)]
    if isinstance(event, list):
        return [s for v in event for s in _strings(v)]
    return [str(event)] if event is not None else []


def evaluate(cond: Any, event: dict[str, Any]) -> bool:
    """True if ``event`` satisfies the (pipeline-processed) condition tree."""
    if isinstance(cond, ConditionAND):
        return all(evaluate(c, event) for c in cond.args)
    if isinstance(cond, ConditionOR):
        return any(evaluate(c, event) for c in cond.args)
    if isinstance(cond, ConditionNOT):
        return not evaluate(cond.args[0], event)
    if isinstance(cond, ConditionFieldEqualsValueExpression):
        return _value_match(cond.value, get_field(event, cond.field))
    if isinstance(cond, ConditionValueExpression):  # keyword search over every string of the event
        return any(_value_match(cond.value, s) for s in _strings(event))
    if hasattr(cond, "detection_items") or hasattr(cond, "args"):
        raise NotImplementedError(f"cannot evaluate {type(cond).__name__} in process")
    raise NotImplementedError(f"cannot evaluate {cond!r} in process")


def _compile_value(value: Any) -> Callable[[Any], bool]:
    """A predicate over one field value, decided once instead of at every event."""
    if isinstance(value, SigmaString):
        rx = _wild_regex(tuple(value.s))
        plain = None if value.contains_special() else str(value).lower()

        if plain is not None:  # the common case (log-source conditions, exact values): no regex, no recursion

            def match_plain(actual: Any) -> bool:
                if isinstance(actual, str):
                    return actual.lower() == plain
                if isinstance(actual, list):
                    return any((a.lower() == plain) if isinstance(a, str) else match_plain(a) for a in actual)
                if actual is _MISSING or actual is None or isinstance(actual, dict):
                    return False
                return str(actual).lower() == plain

            return match_plain

        def match_str(actual: Any) -> bool:
            if isinstance(actual, list):
                return any(match_str(a) for a in actual)
            if actual is _MISSING or actual is None or isinstance(actual, dict):
                return False
            return rx.fullmatch(str(actual)) is not None

        return match_str
    if isinstance(value, SigmaRegularExpression):
        on_lower = lower_regex(value)

        def match_re(actual: Any) -> bool:
            if isinstance(actual, list):
                return any(match_re(a) for a in actual)
            return actual is not _MISSING and actual is not None and on_lower(str(actual).lower())

        return match_re
    return lambda actual: _value_match(value, actual)


def lower_regex(value: Any) -> Callable[[str], bool]:
    """A Sigma regular expression as a test of an already lower-cased string, with Elasticsearch's semantics here.

    Our keyword fields have a lowercase normaliser, which Elasticsearch applies to the value and to the
    expression alike (so `iptables -F` matches `-f`, and `-P INPUT ACCEPT` a lower-case pattern); the
    match is of the whole value, and Lucene's ``.`` matches newlines. ``.*X.*`` is run as a search for X.
    """
    raw = value.regexp if isinstance(value.regexp, str) else (getattr(value.regexp, "original", None) or str(value.regexp))
    flags = re.DOTALL
    for f in getattr(value, "flags", ()) or ():
        flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(getattr(f, "value", str(f))[:1].lower(), 0)
    inner = _searchable(raw)
    if inner is not None:
        search = _regex(inner.lower(), flags).search
        return lambda s: search(s) is not None
    full = _regex(raw.lower(), flags).fullmatch
    return lambda s: full(s) is not None


def _searchable(rx: str) -> str | None:
    """X when ``rx`` is ``.*X.*`` and X has no top-level alternation (so a search for X means the same), else None."""
    if not (rx.startswith(".*") and rx.endswith(".*")) or rx.endswith("\\.*") or len(rx) < 5:
        return None
    inner = rx[2:-2]
    depth, in_class, esc = 0, False, False
    for ch in inner:
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return None
    return inner if depth == 0 and not in_class else None


def compile_condition(cond: Any) -> Callable[[dict[str, Any]], bool]:
    """The condition tree as nested closures (same semantics as ``evaluate``, a fraction of the cost)."""
    if isinstance(cond, ConditionAND):
        parts = [compile_condition(c) for c in cond.args]
        return lambda ev: all(p(ev) for p in parts)
    if isinstance(cond, ConditionOR):
        parts = [compile_condition(c) for c in cond.args]
        return lambda ev: any(p(ev) for p in parts)
    if isinstance(cond, ConditionNOT):
        inner = compile_condition(cond.args[0])
        return lambda ev: not inner(ev)
    if isinstance(cond, ConditionFieldEqualsValueExpression):
        pred, getter = _compile_value(cond.value), field_getter(cond.field)
        return lambda ev: pred(getter(ev))
    if isinstance(cond, ConditionValueExpression):
        pred = _compile_value(cond.value)
        return lambda ev: any(pred(s) for s in _strings(ev))
    raise NotImplementedError(f"cannot evaluate {type(cond).__name__} in process")
