"""Every correlation carries its own cases (soc_rules/tests/<name>.yml): bursts that must and must not raise it, in process and in Elasticsearch alike."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import yaml
from elasticsearch import helpers

from control_plane import clock
from control_plane.es import client_for
from control_plane.soc.correlate import evaluate_events, evaluate_window
from control_plane.soc.rules import RULES_DIR, load_rules
from control_plane.soc.schema import EVENT_MAPPINGS, INDEX_SETTINGS

RULESET = load_rules()


def _cases() -> dict[str, dict]:
    return {c.path.stem: yaml.safe_load((RULES_DIR / "tests" / f"{c.path.stem}.yml").read_text()) for c in RULESET.correlations
            if (RULES_DIR / "tests" / f"{c.path.stem}.yml").exists()}  # fmt: skip


def _window(corr, burst: list[dict]) -> tuple:  # type: ignore[no-untyped-def]
    """The correlation's window opening at the burst's first event (what a detection pass around that time evaluates)."""
    start = min(clock.parse(e["@timestamp"]) for e in burst)
    return start, start + timedelta(seconds=corr.timespan_s)


def test_every_correlation_has_cases() -> None:
    """Each correlation has a case file naming it, with at least one burst that must raise it and one that must not."""
    cases, problems = _cases(), []
    for c in RULESET.correlations:
        case = cases.get(c.path.stem)
        if case is None:
            problems.append(f"{c.path.stem}: no soc_rules/tests/{c.path.stem}.yml")
        elif case.get("rule") != c.id or not case.get("match") or not case.get("nomatch"):
            problems.append(f"{c.path.stem}: the case file needs rule: {c.id}, and match and nomatch bursts")
    assert len(RULESET.correlations) >= 7 and not problems, "\n".join(problems)


def test_correlations_in_process() -> None:
    """The in-process evaluation raises exactly the match bursts (one group each)."""
    wrong = []
    for c in RULESET.correlations:
        case = _cases()[c.path.stem]
        for kind in ("match", "nomatch"):
            for i, burst in enumerate(case[kind]):
                got = evaluate_events(c, burst, *_window(c, burst))
                if (len(got) == 1) != (kind == "match") or len(got) > 1:
                    wrong.append(f"{c.path.stem} {kind} #{i}: {len(got)} group(s) raised")
    assert not wrong, "\n".join(wrong)


@pytest.mark.services
def test_correlations_in_elasticsearch_agree(services) -> None:  # noqa: ANN001
    """Each burst indexed into the real Elasticsearch: the aggregation path raises the same groups as the in-process one."""
    es = client_for(services.settings)
    prefix = f"soc-events-corrtest-{uuid.uuid4().hex[:8]}"
    wrong, made = [], []
    try:
        for c in RULESET.correlations:
            case = _cases()[c.path.stem]
            for kind in ("match", "nomatch"):
                for i, burst in enumerate(case[kind]):
                    index = f"{prefix}-{c.path.stem.replace('_', '-')}-{kind}-{i}"
                    es.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0, **INDEX_SETTINGS}, mappings=EVENT_MAPPINGS)
                    made.append(index)
                    helpers.bulk(es, [{"_index": index, "_source": e} for e in burst], refresh="wait_for")
                    start, end = _window(c, burst)
                    in_es = sorted(tuple(sorted((k, str(v).lower()) for k, v in key.items())) for key, _ in evaluate_window(es, c, start, end, index=index))
                    in_py = sorted(tuple(sorted((k, str(v)) for k, v in key.items())) for key, _ in evaluate_events(c, burst, start, end))
                    if in_es != in_py:
                        wrong.append(f"{c.path.stem} {kind} #{i}: Elasticsearch raised {in_es}, in process {in_py}")
                    elif (len(in_es) == 1) != (kind == "match"):
                        wrong.append(f"{c.path.stem} {kind} #{i}: {len(in_es)} group(s) raised")
    finally:
        for index in made:
            es.indices.delete(index=index, ignore_unavailable=True)
    assert not wrong, "\n".join(wrong)
