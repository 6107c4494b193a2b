"""The readable forms of a report: Chinese HTML and PDF (WeasyPrint, a CJK font from Debian),
a chart (matplotlib), and the tables as an .xlsx workbook (openpyxl)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

import logging as _logging

for _name in ("fontTools", "weasyprint", "matplotlib"):
    _logging.getLogger(_name).setLevel(_logging.WARNING)

TEMPLATES = Path(__file__).resolve().parent / "templates"
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SEVERITIES = ("critical", "high", "medium", "low", "informational")
SEV_NAMES = {"critical": "严重", "high": "高", "medium": "中", "low": "低", "informational": "提示"}
VERDICT_NAMES = {"true_positive": "确认威胁", "false_positive": "误报", "benign": "良性", "undecided": "待研判"}


def _pct(x: float | None, nd: int = 1) -> str:
    return "—" if x is None else f"{x * 100:.{nd}f}%"


def _pctv(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}%"


def _num(x: float | None, nd: int = 1) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+g}"


def month_zh(month: str) -> str:
    """2026-10 → 2026年10月."""
    y, m = month.split("-")
    return f"{y}年{int(m)}月"


def _font() -> Any:
    from matplotlib import font_manager

    for f in CJK_FONTS:
        if Path(f).exists():
            font_manager.fontManager.addfont(f)
            return font_manager.FontProperties(fname=f)
    return None


def pool_chart(doc: dict[str, Any]) -> str | None:
    """A bar chart of mean / p95 CPU, memory and storage utilisation per pool, as an SVG data URI."""
    pools = [p for p in doc["pools"] if p["hosts"]]
    if not pools:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp = _font()
    fig, ax = plt.subplots(figsize=(7.2, 2.6), dpi=100)
    labels = [p["name"] for p in pools]
    series = [("CPU 平均", [p["vcpu"]["utilisation"]["mean"] for p in pools]), ("CPU P95", [p["vcpu"]["utilisation"]["p95"] for p in pools]),
              ("内存平均", [p["memory_gib"]["utilisation"]["mean"] for p in pools]), ("存储平均", [p["storage_gib"]["utilisation"]["mean"] for p in pools])]  # fmt: skip
    w = 0.8 / len(series)
    for i, (name, vals) in enumerate(series):
        ax.bar([x + i * w for x in range(len(pools))], [100 * (v or 0) for v in vals], w, label=name)
    ax.set_xticks([x + 0.4 - w / 2 for x in range(len(pools))], labels, fontproperties=fp)
    ax.set_ylabel("利用率 (%)", fontproperties=fp)
    ax.set_ylim(0, 100)
    ax.legend(prop=fp, fontsize=7, ncols=4, loc="upper right")
    ax.set_title(f"{month_zh(doc['month'])} 各资源池利用率", fontproperties=fp)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def html(doc: dict[str, Any]) -> str:
    """The report as a Chinese HTML page."""
    from datetime import datetime, timedelta

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    end_day = (datetime.fromisoformat(doc["window"]["end"]) - timedelta(days=1)).date().isoformat()
    return env.get_template("report.html.j2").render(
        d=doc, month_zh=month_zh(doc["month"]), end_day=end_day, charts={"pools": pool_chart(doc)}, pct=_pct, pctv=_pctv, num=_num, signed=_signed,
        zone_names={z["network_zone"]: z["name"] for z in doc["network_zones"]}, severities=SEVERITIES, sev_names=SEV_NAMES, verdict_names=VERDICT_NAMES,
    )  # fmt: skip


def pdf(page: str) -> bytes:
    """HTML → PDF with the CJK font embedded."""
    import logging

    from weasyprint import HTML

    logging.getLogger("fontTools").setLevel(logging.WARNING)
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    return HTML(string=page).write_pdf()


def xlsx(doc: dict[str, Any]) -> bytes:
    """The report's tables as a workbook, one sheet per table, headers in Chinese."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "概览"
    ws.append(["报告期", month_zh(doc["month"])])
    ws.append(["版本", doc["revision"]])
    ws.append(["数据覆盖率(%)", doc["coverage"]["prometheus_pct"]])
    ws.append(["生成时间", doc["provenance"]["built_at"]])
    for n in doc["notes"]:
        ws.append(["说明", n])

    def sheet(title: str, header: list[str], rows: list[list[Any]]) -> None:
        s = wb.create_sheet(title)
        s.append(header)
        for c in s[1]:
            c.font = Font(bold=True)
        for r in rows:
            s.append(r)
        for col in s.columns:
            s.column_dimensions[col[0].column_letter].width = max(10, min(40, max(len(str(c.value or "")) for c in col) * 1.6))

    def agg_row(a: dict[str, Any]) -> list[Any]:
        return [a["hosts"], a["vcpu"]["allocated"], a["vcpu"]["utilisation"]["mean"], a["vcpu"]["utilisation"]["p95"], a["vcpu"]["utilisation"]["peak"],
                a["memory_gib"]["allocated"], a["memory_gib"]["utilisation"]["mean"], a["memory_gib"]["utilisation"]["p95"],
                a["storage_gib"]["allocated"], a["storage_gib"]["utilisation"]["mean"], a["network"]["rx_total_gib"], a["network"]["tx_total_gib"], a["availability_pct"]]  # fmt: skip

    agg_head = ["主机数", "已分配vCPU", "CPU平均利用率", "CPU P95", "CPU峰值", "已分配内存GiB", "内存平均利用率", "内存P95", "已分配存储GiB", "存储平均利用率",
                "入流量GiB", "出流量GiB", "可用率(%)"]  # fmt: skip
    sheet("资源池", ["资源池", "名称", "网络区域", *agg_head, "vCPU分配率", "超配比"],
          [[p["pool"], p["name"], p["network_zone"], *agg_row(p), p["allocation_ratio"]["vcpu"], p["overcommit_ratio"]] for p in doc["pools"]])
    sheet("网络区域", ["网络区域", "名称", *agg_head], [[z["network_zone"], z["name"], *agg_row(z)] for z in doc["network_zones"]])
    sheet("部门", ["部门代码", "部门", "信息系统", *agg_head],
          [[t["department"], t["name"], "、".join(s["name"] for s in t["systems"]), *agg_row(t)] for t in doc["departments"]])
    sheet("主机", ["主机", "实例", "资源池", "网络区域", "部门", "vCPU", "内存GiB", "存储GiB", "CPU平均", "CPU P95", "CPU峰值", "内存平均", "内存P95", "磁盘平均",
                   "入流量GiB", "出流量GiB", "可用率(%)", "数据覆盖", "首次出现", "低利用率"],
          [[h["host"], h["instance"], h["pool"], h["network_zone"], h["department"], h["vcpu"], h["memory_gib"], h["storage_gib"], h["cpu"]["mean"], h["cpu"]["p95"],
            h["cpu"]["peak"], h["memory"]["mean"], h["memory"]["p95"], h["disk"]["mean"], h["network"]["rx"]["total_gib"], h["network"]["tx"]["total_gib"],
            h["availability_pct"], h["cpu"]["coverage"], h["first_seen"], "是" if h["underused"] else "否"] for h in doc["hosts"]])  # fmt: skip
    sheet("低利用率主机", ["主机", "资源池", "部门", "vCPU", "CPU平均", "CPU P95"],
          [[u["host"], u["pool"], u["department"], u["vcpu"], u["cpu_mean"], u["cpu_p95"]] for u in doc["underused"]])
    sheet("服务可用性", ["服务", "实例", "可用率(%)", "数据覆盖"], [[s["job"], s["instance"], s["availability_pct"], s["coverage"]] for s in doc["services"]])
    sheet("业务性能", ["接口", "请求数", "P95(毫秒)", "错误率"], [[r["route"], r["requests"], r["p95_ms"], r["error_rate"]] for r in doc["performance"]["routes"]])
    sheet("备份", ["备份源", "执行次数", "成功", "失败", "成功率", "RPO P50(秒)", "RPO P99(秒)"],
          [[b["source"], b["runs"], b["succeeded"], b["failed"], b["success_rate"], b["rpo_p50_s"], b["rpo_p99_s"]] for b in doc["backups"]["sources"]])
    sheet("资源申请与配额", ["部门", "申请", "批准", "驳回", "待审批", "超配额拒绝", "回收申请", "已回收主机", "已回收vCPU", "已回收内存GiB", "已回收存储GiB", "配额使用"],
          [[r["name"], r["requests"], r["approved"], r["rejected"], r["pending"], r["refused"], r["reclaim_requests"], r["reclaimed"]["hosts"],
            r["reclaimed"]["vcpu"], r["reclaimed"]["memory_gib"], r["reclaimed"]["storage_gib"],
            "；".join(f"{q['pool']} 主机{q['used']['hosts']}/{q['quota']['hosts']} vCPU{q['used']['vcpu']}/{q['quota']['vcpu']}" for q in r["quotas"])]
           for r in doc.get("resources", [])])  # fmt: skip
    sheet("演练计划", ["演练计划", "系统", "计划次数", "已演练", "通过", "已签核", "签核人", "按计划完成"],
          [[p["plan_name"], p["system_name"], p["planned"], p["done"], p["passed"], p["signed_off"], p["sign_off"], "是" if p["met"] else "否"]
           for p in doc["backups"].get("plans", [])])  # fmt: skip
    sheet("容灾演练", ["演练", "系统", "开始时间", "RPO(秒)", "RTO(秒)", "结果"],
          [[x["id"], x.get("system"), x["started"], x["rpo_s"], x["rto_s"], x["status"]] for x in doc["backups"]["drills"]])
    al = doc["security"]["alerts"] or {"by_severity": {}, "by_verdict": {}}
    sheet("安全", ["项目", "数量"], [[f"告警-{SEV_NAMES[k]}", al["by_severity"].get(k, 0)] for k in SEVERITIES]
          + [[f"研判-{v}", al["by_verdict"].get(k, 0)] for k, v in VERDICT_NAMES.items()]
          + [["闸门拒绝操作", doc["security"]["refused_operations"]], ["阻断高危操作", doc["security"]["blocked_operations"]]])
    sheet("数据缺口", ["开始", "结束", "小时"], [[g["from"], g["to"], g["hours"]] for g in doc["coverage"]["gaps"]])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def render_all(doc: dict[str, Any], out: Path) -> None:
    """Write report.html, report.pdf and report.xlsx beside report.json."""
    page = html(doc)
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "report.pdf").write_bytes(pdf(page))
    (out / "report.xlsx").write_bytes(xlsx(doc))
