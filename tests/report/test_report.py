"""The monthly report against a real Prometheus holding a known month, checked against figures computed
independently from the same input (tests/report/monthdata.py), plus its forms, signature and immutability."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from control_plane.crypto import InvalidSignature
from control_plane.errors import GovctlError
from control_plane.gate import OperationRequest
from control_plane.report import store
from control_plane.report.build import month_window
from control_plane.report.prom import MAX_POINTS, choose_step
from control_plane.context import Context
from tests.gate.conftest import make_people
from tests.report import monthdata as md

TOL = 6e-5  # the report rounds ratios to 4 decimals


def _close(got: float | None, want: float | None, tol: float = TOL) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return abs(got - want) <= tol * max(1.0, abs(want))


@pytest.fixture(scope="module")
def expected(month_prom) -> dict:  # noqa: ANN001
    """Per host, per grid point, from the truth functions with Prometheus' evaluation rules written out."""
    g = md.grid(300)
    return {"grid": g, "hosts": {h.name: md.expected_host(h, g, month_prom.eval_offset) for h in md.HOSTS}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, month_prom) -> tuple[Context, dict, store.Built]:  # noqa: ANN001
    """September (the previous month, partly covered) and then October, built through the gate (once for the module)."""
    from tests.report.conftest import make_report_rt

    report_rt = make_report_rt(tmp_path_factory.mktemp("built"), month_prom)
    people = make_people(report_rt)
    gate = report_rt.gate
    gate.submit(people["ops_engineer"], OperationRequest("report.build", "2026-09"))
    view = gate.submit(people["ops_engineer"], OperationRequest("report.build", "2026-10"))
    assert view.status == "succeeded", view
    b = store.get(report_rt, "2026-10")
    return report_rt, store.load(b), b


def test_month_window_and_step() -> None:
    """Month boundaries are Asia/Shanghai midnights; the step keeps every series under 11,000 points."""
    s, e = month_window("2026-10")
    assert s.isoformat() == "2026-10-01T00:00:00+08:00" and e.isoformat() == "2026-11-01T00:00:00+08:00"
    for days in (28, 29, 30, 31):
        step = choose_step(days * 86400)
        assert days * 86400 / step + 1 <= MAX_POINTS and step == 300
    assert month_window("2026-12")[1].isoformat() == "2027-01-01T00:00:00+08:00"


def test_host_figures_match_independent_computation(built: tuple, expected: dict) -> None:
    """CPU, memory and disk (mean, p95, peak, coverage), availability, allocations and traffic of every host."""
    _, doc, _ = built
    rows = {r["host"]: r for r in doc["hosts"]}
    assert set(rows) == {h.name for h in md.HOSTS}
    for h in md.HOSTS:
        r, e = rows[h.name], expected["hosts"][h.name]
        for fig in ("cpu", "memory", "disk"):
            want = md.stats(e[fig])
            for k in ("mean", "p95", "peak"):
                assert _close(r[fig][k], want[k]), (h.name, fig, k, r[fig][k], want[k])
            assert abs(r[fig]["coverage"] - want["coverage"]) < 1e-6, (h.name, fig, r[fig]["coverage"], want["coverage"])
        ups = [u for u in e["up"] if u is not None]
        assert _close(r["availability_pct"], 100 * sum(1 for u in ups if u == 1) / len(ups), 1e-5), h.name
        assert (r["vcpu"], r["memory_gib"], r["storage_gib"]) == (h.cpus, h.mem_gib, h.disk_gib)
        rx = md.stats(e["rx"])
        assert abs(r["network"]["rx"]["mean_bps"] - rx["mean"]) < 0.06, (h.name, r["network"]["rx"], rx)
        assert r["network"]["rx"]["peak_bps"] == pytest.approx(md.RX_BPS[h.name], abs=0.06)
    # the honest parts: the new host is covered from 15 October only, the one that was down is below 100 %
    assert rows["pb-data-1"]["first_seen"].startswith("2026-10-15T00:")
    assert rows["pb-data-1"]["cpu"]["coverage"] < 0.56
    assert 99.0 < rows["pa-data-1"]["availability_pct"] < 100.0
    assert rows["pa-app-1"]["availability_pct"] == 100.0


def test_pool_zone_department_aggregates(built: tuple, expected: dict) -> None:
    """Allocated vs used per pool, zone and department: per grid point Σ utilisation × size over the hosts present."""
    _, doc, _ = built
    by_pool = {p["pool"]: p for p in doc["pools"]}
    for pool, zone in (("primary", "egov"), ("backup", "internet")):
        hosts = [h for h in md.HOSTS if h.pool == pool]
        series = []
        for i in range(len(expected["grid"])):
            used = alloc = 0.0
            for h in hosts:
                v = expected["hosts"][h.name]["cpu"][i]
                if v is not None:
                    used += v * h.cpus
                    alloc += h.cpus
            series.append(used / alloc if alloc else None)
        want = md.stats(series)
        p = by_pool[pool]
        assert p["vcpu"]["allocated"] == sum(h.cpus for h in hosts)
        for k in ("mean", "p95", "peak"):
            assert _close(p["vcpu"]["utilisation"][k], want[k]), (pool, k, p["vcpu"]["utilisation"][k], want[k])
        assert p["network_zone"] == zone
    primary = by_pool["primary"]
    assert primary["allocation_ratio"]["vcpu"] == pytest.approx(12 / 16) and primary["overcommit_ratio"] == pytest.approx(12 / 8)
    zones = {z["network_zone"]: z for z in doc["network_zones"]}
    assert zones["egov"]["hosts"] == 2 and zones["internet"]["hosts"] == 1 and zones["internet"]["name"] == "互联网区"
    depts = {d["department"]: d for d in doc["departments"]}
    assert depts["health-commission"]["hosts"] == 1 and depts["health-commission"]["name"] == "市卫生健康委员会"
    assert depts["water-bureau"]["registered"] is False and any("pb-data-1" in n for n in doc["notes"])


def test_service_backup_and_coverage_figures(built: tuple, expected: dict) -> None:
    """API p95 and error rate, backup success and RPO percentiles, and the Prometheus gap stated, not zero-filled."""
    _, doc, _ = built
    ov = doc["performance"]["overall"]
    # 90 of every 100 requests under 0.1 s, all under 0.5 s: p95 = 0.1 + 0.4 · (95 − 90)/(100 − 90) s
    assert ov["p95_ms"] == pytest.approx(300.0, abs=0.01) and ov["error_rate"] == pytest.approx(0.02, abs=1e-6)
    assert ov["requests"] == 100 * 31 * 1440
    src = {s["source"]: s for s in doc["backups"]["sources"]}
    s, e = (t.timestamp() for t in month_window("2026-10"))
    ok, failed = md.backup_marks(s, e), sum(1 for f in md.FAILED_AT if s < f <= e)
    assert (src["pg-main"]["succeeded"], src["pg-main"]["failed"]) == (ok, failed) == (124, 2)
    assert src["pg-main"]["success_rate"] == pytest.approx(ok / (ok + failed), abs=1e-6)
    rpo_series = {t: md.rpo(t) for t in md.times(e) if md.prom_up(t)}
    rpo = [md.latest(rpo_series, t) for t in expected["grid"]]
    v = [x for x in rpo if x is not None]
    assert (src["files-docs"]["rpo_p50_s"], src["files-docs"]["rpo_p99_s"]) == (md.nearest_rank(v, 0.5), md.nearest_rank(v, 0.99))
    # coverage: grid points with any sample at all
    scraped = {t: 1.0 for t in md.times(e) if md.prom_up(t)}
    anyup = [md.latest(scraped, t) for t in expected["grid"]]
    assert doc["coverage"]["prometheus_pct"] == pytest.approx(100 * sum(1 for x in anyup if x is not None) / len(anyup), abs=1e-3)
    assert doc["coverage"]["gap_count"] == 1 and 23.5 < doc["coverage"]["gaps"][0]["hours"] <= 24
    assert doc["window"]["points"] == len(expected["grid"]) <= 11000


def test_month_over_month_against_the_previous_revision(built: tuple, expected: dict) -> None:
    """October is compared with September's stored report (in percentage points)."""
    rt, doc, _ = built
    prev = store.load(store.get(rt, "2026-09"))
    mom = doc["month_over_month"]
    assert mom["previous_month"] == "2026-09" and mom["previous_revision"] == 1
    pool = next(p for p in mom["pools"] if p["pool"] == "primary")
    cur = next(p for p in doc["pools"] if p["pool"] == "primary")["vcpu"]["utilisation"]["mean"]
    old = next(p for p in prev["pools"] if p["pool"] == "primary")["vcpu"]["utilisation"]["mean"]
    assert pool["cpu_mean_pp"] == pytest.approx(100 * (cur - old), abs=1e-3) and pool["cpu_mean_pp"] > 0
    assert prev["coverage"]["prometheus_pct"] < 25  # September holds six days of data, and says so


def test_signed_schema_valid_and_readable_forms(built: tuple) -> None:
    """The JSON is schema-valid and SM2-signed; the PDF is Chinese with the figures; the workbook has the tables."""
    rt, doc, b = built
    store.validate(doc)
    res = store.verify_revision(rt, b)
    assert res["ok"] and res["key_id"] == rt.signer.public_key.key_id
    text = "".join(page.extract_text() for page in PdfReader(b.path / "report.pdf").pages)
    assert "云资源使用与业务性能月报" in text and "主资源池" in text and "低利用率主机" in text and "pa-data-1" in text
    cpu = next(p for p in doc["pools"] if p["pool"] == "primary")["vcpu"]["utilisation"]["mean"]
    assert f"{cpu * 100:.1f}%" in text
    wb = load_workbook(b.path / "report.xlsx")
    assert {"资源池", "网络区域", "部门", "主机", "低利用率主机", "备份", "安全"} <= set(wb.sheetnames)
    hosts = [row[0].value for row in wb["主机"].iter_rows(min_row=2)]
    assert sorted(hosts) == sorted(h.name for h in md.HOSTS)
    assert "2026年10月" in (b.path / "report.html").read_text(encoding="utf-8")


def test_immutable_and_corrections_need_a_signoff(report_rt: Context) -> None:
    """A second build is refused; a correction is a new approved revision naming the old one; tampering is found."""
    rt = report_rt
    people = make_people(rt)
    assert rt.gate.submit(people["ops_engineer"], OperationRequest("report.build", "2026-10")).status == "succeeded"
    b = store.get(rt, "2026-10")
    doc = store.load(b)
    with pytest.raises(store.ReportExists, match="already built"):
        rt.gate.submit(people["ops_engineer"], OperationRequest("report.build", "2026-10"))
    view = rt.gate.submit(people["ops_engineer"], OperationRequest("report.build", "2026-10", {"correction": True, "reason": "registry fixed: water bureau added"}))
    assert (view.status, view.risk) == ("pending_approval", "high")
    rt.gate.approve(people["approver"], view.id, "ok")
    done = rt.gate.run(people["ops_engineer"], view.id)
    assert done.result["revision"] == 2
    r2 = store.load(store.get(rt, "2026-10"))
    assert r2["supersedes"] == {"revision": 1, "sha256_sm3": b.digest_sm3, "reason": "registry fixed: water bureau added", "signoff": ["approver"]}
    assert store.load(store.get(rt, "2026-10", 1)) == doc  # the old revision is untouched
    # tampering with a stored file is found
    f = b.path / "report.json"
    os.chmod(f, 0o644)
    f.write_bytes(f.read_bytes().replace(b'"month":"2026-10"', b'"month":"2026-11"'))
    with pytest.raises(store.ReportError, match="changed since it was built"):
        store.verify_revision(rt, store.get(rt, "2026-10", 1))
    # a signature by another key is refused
    from control_plane.crypto import SM2PrivateKey

    with pytest.raises(InvalidSignature):
        store.verify_revision(rt, store.get(rt, "2026-10", 2), SM2PrivateKey.generate().public_key)


def test_bad_month_refused_with_a_clear_error(report_rt: Context) -> None:
    """YYYY-MM only, and not a month that has not begun."""
    people = make_people(report_rt)
    with pytest.raises(GovctlError, match="YYYY-MM"):
        report_rt.gate.submit(people["ops_engineer"], OperationRequest("report.build", "October"))
    with pytest.raises(GovctlError, match="has not begun"):
        report_rt.gate.submit(people["ops_engineer"], OperationRequest("report.build", "2099-01"))


def test_current_month_without_data_says_so(report_rt: Context, services) -> None:  # noqa: ANN001
    """The month we are in has (next to) no samples in this Prometheus: coverage says so, it is provisional and never sent; refusals are counted."""
    from datetime import datetime

    people = make_people(report_rt)
    from control_plane.gate import Forbidden

    now = datetime.now(md.SH)
    month = f"{now.year:04d}-{now.month:02d}"
    with pytest.raises(Forbidden):
        report_rt.gate.submit(people["auditor"], OperationRequest("deploy.up", "local"))
    b = store.build(report_rt, month, actor="test", render=False)
    doc = store.load(b)
    assert doc["coverage"]["prometheus_pct"] < 0.05 and doc["coverage"]["gap_count"] >= 1  # at most October's last samples, in the lookback
    assert all(h["cpu"]["coverage"] < 0.001 for h in doc["hosts"])
    assert (doc["performance"]["overall"] or {}).get("requests", 0) < 1000  # not October's 4.4 million
    assert doc["security"]["refused_operations"] >= 1 and doc["security"]["alerts"] is not None
    assert any("尚未结束" in n for n in doc["notes"]) and doc["final"] is False
    # a provisional month is never sent to the province
    with pytest.raises(GovctlError, match="provisional"):
        report_rt.gate.submit(people["ops_engineer"], OperationRequest("report.submit", month))
    json.dumps(doc)


def test_report_json_is_what_the_signature_covers(built: tuple) -> None:
    """The signature block's SM3 digest is over the exact stored bytes."""
    from control_plane.crypto import sm3_hex

    _, _, b = built
    sig = json.loads((b.path / "report.sig.json").read_text())
    assert sig["digest_sm3"] == sm3_hex((b.path / "report.json").read_bytes()) == b.digest_sm3
    assert Path(b.path / "report.json").stat().st_mode & 0o222 == 0  # written once, read-only


def test_provisional_build_then_final_revision(report_rt: Context) -> None:
    """A month built before it ended is provisional; after the month, building again makes the final revision (with the reason said)."""
    from datetime import datetime

    early = store.build(report_rt, "2026-10", actor="test", now=datetime(2026, 10, 20, 12, tzinfo=md.SH), render=False)
    assert store.load(early)["final"] is False and store.load(early)["window"]["points"] == 8928
    final = store.build(report_rt, "2026-10", actor="test", render=False)
    doc = store.load(final)
    assert final.revision == 2 and doc["final"] is True
    assert doc["supersedes"]["revision"] == 1 and "provisional" in doc["supersedes"]["reason"]
    with pytest.raises(store.ReportExists):
        store.build(report_rt, "2026-10", actor="test", render=False)


def test_a_department_sees_its_own_figures_of_the_newest_report(built: tuple) -> None:
    """`govctl resource usage` for the health commission: the newest revision (October), only its hosts and its row."""
    from control_plane.tenancy.service import department_usage

    rt, doc, b = built
    u = department_usage(rt, "health-commission")
    assert (u["month"], u["revision"]) == ("2026-10", b.revision)
    mine = sorted(h["host"] for h in doc["hosts"] if h["department"] == "health-commission")
    assert mine and sorted(h["host"] for h in u["hosts"]) == mine
    assert len(mine) < len(doc["hosts"]), "the other departments' hosts are left out"
    assert u["department"]["department"] == "health-commission"
    assert all(x["department"] == "health-commission" for x in u["underused"])
