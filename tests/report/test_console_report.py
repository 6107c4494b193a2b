"""The report sender's console: months and revisions, the signed report previewed (HTML in a sandboxed frame, PDF), submitted to the
province's stand-in, and the verified receipt shown — in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.context import Context
from control_plane.report import deliver, store
from tests.console.kit import Server, axe, login, person, shot
from tests.standins.province import serve_in_thread

pytestmark = pytest.mark.services


def test_preview_and_submit_a_month_from_the_console(report_rt: Context, page: Any) -> None:
    """An ops engineer opens the month, reads the preview, submits; the receipt the province signed is shown."""
    rt = report_rt
    store.build(rt, "2026-10", actor="scheduler")
    ops = person(rt, "reporter", ["ops_engineer"])
    aud = person(rt, "assessor", ["auditor"])
    server, thread, recv = serve_in_thread(rt.settings, rt.signer.public_key)
    try:
        with Server(rt) as srv:
            login(page, srv.url, ops, rt)
            page.goto(f"{srv.url}/reports")
            assert "2026-10" in page.inner_text("main") and "未报送" in page.inner_text("main")
            assert not axe(page, "reports")
            page.click("a[href='/reports/2026-10/1']")
            assert "SM2 签名有效" in page.inner_text("#report-signature")
            frame = page.frame_locator("iframe.report")
            assert "2026" in frame.locator("body").inner_text(timeout=15000)  # the rendered report, in a sandboxed frame
            pdf = page.request.get(f"{srv.url}/reports/2026-10/1/pdf")
            assert pdf.ok and pdf.body()[:5] == b"%PDF-"
            assert not axe(page, "report")
            shot(page, "report", readme=True)
            page.click("button:has-text('报送省级平台')")
            assert "report.submit" in page.inner_text(".flash")
            page.reload()
            assert "已报送" in page.inner_text("td.delivery-status")
            receipt = deliver.list_deliveries(rt, "2026-10")[0]["receipt"]["receipt"]
            assert page.inner_text("#receipt-id") == receipt["receipt_id"]
            assert recv.calls == 1
            # an auditor reads the same page without the submit button
            page.click("text=退出")
            login(page, srv.url, aud, rt)
            page.goto(f"{srv.url}/reports/2026-10/1")
            assert page.locator("button:has-text('报送省级平台')").count() == 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)
