"""All rules: load, carry their own test events, and match them the same way in process and in Elasticsearch."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from elasticsearch import helpers

from control_plane.es import client_for
from control_plane.soc.matcher import evaluate
from control_plane.soc.rules import RULES_DIR, load_rules
from control_plane.soc.schema import INDEX_SETTINGS, EVENT_MAPPINGS

RULESET = load_rules()


def _cases() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((RULES_DIR / "tests").glob("*.yml"))}


def test_every_rule_loads_and_is_complete() -> None:
    """No issues; ≥ 25 rules; unique ids; ATT&CK tags; and a test file with must- and must-not-match events for each."""
    problems = [str(i) for i in RULESET.issues]
    cases = _cases()
    assert len(RULESET.rules) >= 25
    for r in RULESET.rules:
        name = r.path.stem
        if not any(t.startswith("attack.") for t in r.tags):
            problems.append(f"{name}: no ATT&CK tag")
        case = cases.get(name)
        if case is None:
            problems.append(f"{name}: no soc_rules/tests/{name}.yml")
        elif case.get("rule") != r.id or not case.get("match") or not case.get("nomatch"):
            problems.append(f"{name}: the test file needs rule: {r.id}, and match and nomatch events")
    assert not problems, "\n".join(problems)


def test_rules_in_process() -> None:
    """The in-process matcher (the inline decision's path) agrees with every rule's own test events."""
    cases, wrong = _cases(), []
    for r in RULESET.rules:
        case = cases[r.path.stem]
        wrong += [f"{r.path.stem}: should match {e}" for e in case["match"] if not evaluate(r.condition, e)]
        wrong += [f"{r.path.stem}: should not match {e}" for e in case["nomatch"] if evaluate(r.condition, e)]
    assert not wrong, "\n".join(wrong)


def test_rules_in_elasticsearch(services) -> None:  # noqa: ANN001
    """Each rule's query, run by the real Elasticsearch over its test events, finds exactly the must-match ones."""
    es = client_for(services.settings)
    index = f"soc-events-ruletest-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, settings={"number_of_shards": 1, "number_of_replicas": 0, **INDEX_SETTINGS}, mappings=EVENT_MAPPINGS)
    cases, actions, expected = _cases(), [], {}
    for r in RULESET.rules:
        case = cases[r.path.stem]
        for kind in ("match", "nomatch"):
            for i, ev in enumerate(case[kind]):
                doc_id = f"{r.path.stem}:{kind}:{i}"
                actions.append({"_index": index, "_id": doc_id, "_source": ev})
                if kind == "match":
                    expected.setdefault(r.id, set()).add(doc_id)
    helpers.bulk(es, actions, refresh="wait_for")
    wrong = []
    try:
        for r in RULESET.rules:
            ids = [a["_id"] for a in actions if a["_id"].startswith(f"{r.path.stem}:")]
            resp = es.search(index=index, size=len(ids), query={"bool": {"filter": [{"ids": {"values": ids}},
                                                                                     {"query_string": {"query": r.query, "analyze_wildcard": True}}]}})  # fmt: skip
            got = {h["_id"] for h in resp["hits"]["hits"]}
            if got != expected.get(r.id, set()):
                wrong.append(f"{r.path.stem}: Elasticsearch matched {sorted(got)}, expected {sorted(expected.get(r.id, set()))}; query {r.query}")
    finally:
        es.indices.delete(index=index)
    assert not wrong, "\n".join(wrong)


def test_bad_rule_files_reported_others_load(tmp_path: Path) -> None:
    """Each broken file is named with line and field; the good one still loads."""
    good = (RULES_DIR / "mkfs_on_device.yml").read_text()
    (tmp_path / "good.yml").write_text(good)
    (tmp_path / "bad_yaml.yml").write_text("title: x\n  id: [\n")
    (tmp_path / "bad_action.yml").write_text(good.replace("action: block", "action: nuke").replace("id: ", "id: 1"))
    (tmp_path / "bad_response.yml").write_text(good.replace("action: block", "action: block\nresponse: reboot_city").replace("id: 6", "id: 7"))
    (tmp_path / "no_mapping.yml").write_text(good.replace("product: linux", "product: windows").replace("id: 6", "id: 8"))
    (tmp_path / "bad_sigma.yml").write_text(good.replace("condition: sel", "condition: sel and nosuchthing").replace("id: 6", "id: 9"))
    rs = load_rules(tmp_path)
    assert [r.path.name for r in rs.rules] == ["good.yml"]
    msgs = {Path(i.path).name: str(i) for i in rs.issues}
    assert set(msgs) == {"bad_yaml.yml", "bad_action.yml", "bad_response.yml", "no_mapping.yml", "bad_sigma.yml"}
    assert "bad_yaml.yml:2" in msgs["bad_yaml.yml"]
    assert "action" in msgs["bad_action.yml"] and "'alert' or 'block'" in msgs["bad_action.yml"]
    assert "reboot_city" in msgs["bad_response.yml"] and "block_ip" in msgs["bad_response.yml"]
    assert "logsource" in msgs["no_mapping.yml"] and "no mapping" in msgs["no_mapping.yml"]
    assert "nosuchthing" in msgs["bad_sigma.yml"]


def test_public_sigma_rule_loads_with_defaults(tmp_path: Path) -> None:
    """A rule written for the public Sigma corpus (Sigma field names, none of ours) loads and maps to ECS."""
    (tmp_path / "public.yml").write_text(
        "title: Linux Shell Pipe to Shell\nid: 880973f3-9708-491c-a77b-2a35a1921158\nstatus: test\n"
        "logsource: {product: linux, category: process_creation}\n"
        "detection:\n  selection:\n    CommandLine|contains: ['| sh', '| bash']\n  condition: selection\nlevel: medium\n"
        "tags: [attack.execution]\n"
    )
    rs = load_rules(tmp_path)
    assert not rs.issues and len(rs.rules) == 1
    r = rs.rules[0]
    assert (r.ours.severity, r.ours.action, r.ours.mode) == ("medium", "alert", "enforce")
    assert "process.command_line" in r.query
    assert evaluate(r.condition, {"event": {"category": ["process"]}, "process": {"command_line": "curl x | bash"}})
