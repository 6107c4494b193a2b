// govctl console: progressive enhancement only (every page works without it, except charts, replay and the terminal).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf;
  document.addEventListener("htmx:configRequest", (e) => { if (csrf) e.detail.headers["X-CSRF-Token"] = csrf; });

  function data(id) { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }

  function charts() {
    if (!window.echarts) return;
    const sev = document.getElementById("chart-alerts");
    if (sev) {
      const d = data("chart-alerts-data");
      echarts.init(sev).setOption({ animation: false, grid: { left: 40, right: 10, top: 10, bottom: 24 },
        xAxis: { type: "category", data: d.labels }, yAxis: { type: "value", minInterval: 1 },
        series: [{ type: "bar", data: d.values, itemStyle: { color: (p) => ["#8e1b14", "#b3261e", "#8a5300", "#3d5a80"][p.dataIndex] } }] });
    }
    const hist = document.getElementById("chart-hist");
    if (hist) {
      const d = data("chart-hist-data") || [];
      echarts.init(hist).setOption({ animation: false, grid: { left: 50, right: 10, top: 10, bottom: 30 }, tooltip: { trigger: "axis" },
        xAxis: { type: "time" }, yAxis: { type: "value", minInterval: 1 },
        series: [{ type: "bar", data: d.map((b) => [b[0], b[1]]), itemStyle: { color: "#0b5cad" } }] });
    }
  }

  function replay() {
    const el = document.getElementById("player");
    if (!el || !window.AsciinemaPlayer) return;
    const player = AsciinemaPlayer.create(el.dataset.cast, el, { fit: "width", terminalFontSize: "13px", idleTimeLimit: 2 });
    window.govctlPlayer = player;
    document.querySelectorAll("button.seek").forEach((b) => b.addEventListener("click", () => { player.seek(parseFloat(b.dataset.t)); player.play(); }));
  }

  function terminal() {
    const form = document.getElementById("term-open");
    const el = document.getElementById("terminal");
    if (!form || !el || !window.Terminal) return;
    const state = document.getElementById("term-state");
    let ws = null;
    const term = new Terminal({ cursorBlink: true, fontSize: 14, convertEol: false, fontFamily: "monospace" });
    const fit = window.FitAddon ? new FitAddon.FitAddon() : null;
    if (fit) term.loadAddon(fit);
    term.open(el);
    if (fit) fit.fit();
    window.govctlTerminal = term;
    const enc = new TextEncoder();
    term.onData((d) => { if (ws && ws.readyState === 1) ws.send(enc.encode(d)); });
    term.onResize((s) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify({ resize: [s.cols, s.rows] })); });
    window.addEventListener("resize", () => { if (fit) fit.fit(); });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (ws) ws.close();
      const [host, account] = document.getElementById("t-host").value.split("|");
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = new URLSearchParams({ host, account, cols: term.cols, rows: term.rows });
      ws = new WebSocket(`${proto}//${location.host}/terminal/ws?${q}`);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => { state.textContent = document.documentElement.lang === "en" ? "connected" : "已连接"; term.focus(); };
      ws.onmessage = (m) => term.write(new Uint8Array(m.data));
      ws.onclose = () => { state.textContent = document.documentElement.lang === "en" ? "disconnected" : "已断开"; };
    });
  }

  function watch() {
    const el = document.getElementById("watch");
    if (!el || !window.Terminal) return;
    const term = new Terminal({ disableStdin: true, fontSize: 13, fontFamily: "monospace" });
    term.open(el);
    window.govctlWatch = term;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}${el.dataset.ws}`);
    ws.onmessage = (m) => term.write(m.data);
  }

  document.addEventListener("DOMContentLoaded", () => { charts(); replay(); terminal(); watch(); });
})();
