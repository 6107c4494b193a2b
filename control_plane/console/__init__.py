"""The web console (控制台): server-rendered pages for approvers, analysts, auditors, operators and the report sender.

Served by the API's FastAPI app under ``/``: Jinja2 templates, htmx, ECharts, asciinema-player and
xterm.js from ``assets/node_modules`` (installed by ``make`` with ``npm ci``; nothing from a CDN).
People sign in with a password and TOTP; every action on a page is the same gated operation the CLI
and the API submit, and every page is one of the policy's reads.
"""
