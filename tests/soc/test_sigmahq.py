"""The public SigmaHQ corpus (rules/linux, a pinned unchanged copy in tests/data/sigmahq) loads, compiles in process and runs in Elasticsearch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.soc.rules import load_rules

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sigmahq"
LINUX = CORPUS / "rules" / "linux"


def test_the_copy_is_pinned_and_licensed() -> None:
    """The licence (DRL 1.1) and the source commit travel with the rules."""
    assert "Detection Rule License" in (CORPUS / "LICENSE").read_text(encoding="utf-8")
    assert "8eaafff1f2845a696050e05e72ba1140ee190698" in (CORPUS / "SOURCE").read_text(encoding="utf-8")


def test_at_least_95_percent_load_and_compile_in_process() -> None:
    """Sub-folders are read; ≥ 95 % of the files load; every loaded rule has a Lucene query and an in-process matcher; every refusal says why."""
    files = sorted(LINUX.rglob("*.yml"))
    assert len(files) >= 200, len(files)
    rs = load_rules(LINUX)
    loaded = len(rs.rules) + len(rs.correlations)
    assert loaded >= 0.95 * len(files), "\n".join(map(str, rs.issues))
    assert loaded + len(rs.issues) == len(files)
    assert all(i.message for i in rs.issues)
    for r in rs.rules:
        assert r.query.strip() and callable(r.match), r.path
    # an in-process match on a keyword rule (product: linux alone → the syslog message)
    kw = [r for r in rs.rules if r.sigma.logsource.category is None and r.sigma.logsource.service is None]
    assert kw, "the corpus has rules on the bare linux product"


@pytest.mark.services
def test_every_query_runs_in_elasticsearch(sqlite_runtime, services) -> None:  # noqa: ANN001
    """Each converted query is accepted by the real Elasticsearch (a size-0 search over the event indices)."""
    from control_plane.soc.schema import ensure_templates

    es = sqlite_runtime.es
    ensure_templates(es)
    if not es.indices.exists(index="soc-events-2000.01.01"):
        es.indices.create(index="soc-events-2000.01.01")
    rs = load_rules(LINUX)
    answers: list[dict] = []
    for i in range(0, len(rs.rules), 30):  # in batches, each well within a request's time on a busy machine
        body: list[dict] = []
        for r in rs.rules[i:i + 30]:
            body += [{"index": "soc-events-2000.01.01"}, {"size": 0, "query": {"query_string": {"query": r.query, "analyze_wildcard": True}}}]
        answers += es.options(request_timeout=120).msearch(searches=body)["responses"]
    bad = [(r.path.name, a.get("error")) for r, a in zip(rs.rules, answers) if "error" in a or a.get("_shards", {}).get("failed")]
    assert not bad, bad


def test_validate_recurses_and_an_empty_folder_fails(tmp_path: Path) -> None:
    """govctl soc rules validate --path on SigmaHQ's layout loads the sub-folders; a folder without rules exits 1 and says so."""
    def validate(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "control_plane.cli", "soc", "rules", "validate", "--path", str(path)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    ok = validate(CORPUS / "rules")
    assert ok.returncode == 0, ok.stderr
    assert "210 rules" in ok.stdout
    empty = validate(tmp_path)
    assert empty.returncode == 1 and "no rule files" in empty.stderr
