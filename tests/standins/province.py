"""A local stand-in for the provincial authority's report endpoint.

It checks a submission the way the province would: opens the seal with the province's SM2 key,
verifies the platform's SM2 signature over the report, validates it against the published JSON
Schema, and answers with a receipt signed by the province's key. The same idempotency key
always gets the same receipt. It can be told to fail the next N submissions (an outage), which
is how retries are tested. Only this stand-in holds the province's private key.

It lives under ``tests/``: the product never imports it. Tests start it in a thread; for a
local trial run it alone with ``python -m tests.standins.province --dir DIR --platform-key PEM
--port 8790`` and point ``report.endpoint`` and ``report.province_public_key`` (``DIR/province.pub.pem``) at it.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from control_plane.crypto import CryptoError, SM2PrivateKey, SM2PublicKey, dump_private_key, load_private_key, sm3_hex
from control_plane.report.seal import canonical, open_seal, sign, verify


def receiver_dir(settings: Any) -> Path:
    """Where a test's stand-in keeps its key, inbox and receipts (beside that test's var dir)."""
    return settings.var / "report-receiver"


def configure(data: dict[str, Any], var: Path, port: int) -> dict[str, Any]:
    """A test configuration's report section pointed at a stand-in on ``port`` keeping its files under ``var``."""
    report = data.setdefault("report", {})
    report["endpoint"] = f"http://127.0.0.1:{port}/api/v1/reports"
    report["province_public_key"] = str(var / "report-receiver" / "province.pub.pem")
    return data


class Receiver:
    """The province's side: its key pair, the platform key it trusts, what it received."""

    def __init__(self, root: Path, platform: SM2PublicKey) -> None:
        self.root = root
        self.platform = platform
        (root / "inbox").mkdir(parents=True, exist_ok=True)
        kf, pw = root / "province.key", root / "passphrase"
        if not kf.exists():
            import os
            import secrets

            pw.write_text(secrets.token_urlsafe(24))
            os.chmod(pw, 0o600)
            key = SM2PrivateKey.generate()
            kf.write_text(dump_private_key(key, pw.read_text(), 100_000))
            os.chmod(kf, 0o600)
            (root / "province.pub.pem").write_text(key.public_key.to_pem())
        self.key = load_private_key(kf.read_text(), pw.read_text(), source=str(kf))
        self.fail_next = 0
        self.fail_status = 503
        self.lock = threading.Lock()
        self.calls = 0

    def receipt_for(self, key: str) -> dict[str, Any] | None:
        """The receipt already given for an idempotency key."""
        f = self.root / "inbox" / f"{sm3_hex(key.encode())[:32]}.receipt.json"
        return json.loads(f.read_text()) if f.exists() else None

    def receive(self, envelope: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        """Check a submission; (HTTP status, body)."""
        from control_plane.report.store import ReportError, validate

        with self.lock:
            self.calls += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status, {"error": "the provincial endpoint is temporarily unavailable (simulated outage)"}
            if not key:
                return 400, {"error": "an Idempotency-Key header is required"}
            old = self.receipt_for(key)
            if old is not None:
                return 200, old
            if (envelope.get("aad") or {}).get("idempotency_key") != key:
                return 400, {"error": "the Idempotency-Key header does not match the sealed envelope"}
            try:
                submission = json.loads(open_seal(envelope, self.key))
                data = base64.b64decode(submission["report"])
                verify(data, submission["signature"], self.platform)
                doc = json.loads(data)
                validate(doc)
            except CryptoError as exc:
                return 422, {"error": f"rejected: {exc.message}"}
            except ReportError as exc:
                return 422, {"error": f"rejected: {exc.message}"}
            except (KeyError, ValueError) as exc:
                return 400, {"error": f"malformed submission: {exc}"}
            if (doc.get("month"), doc.get("revision")) != (envelope["aad"].get("month"), envelope["aad"].get("revision")):
                return 422, {"error": "the envelope's month/revision do not match the report inside"}
            body = {"receipt_id": uuid.uuid4().hex, "idempotency_key": key, "month": doc["month"], "revision": doc["revision"],
                    "digest_sm3": sm3_hex(data), "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "receiver": "province (local stand-in)"}  # fmt: skip
            receipt = {"receipt": body, "signature": sign(self.key, canonical(body))}
            stem = sm3_hex(key.encode())[:32]
            (self.root / "inbox" / f"{stem}.report.json").write_bytes(data)
            (self.root / "inbox" / f"{stem}.receipt.json").write_text(json.dumps(receipt, ensure_ascii=False))
            return 201, receipt


def create_app(recv: Receiver) -> FastAPI:
    """The endpoint: POST /api/v1/reports (sealed envelope, Idempotency-Key header); loopback-only failure switch."""
    app = FastAPI(title="province report endpoint (local stand-in)", docs_url=None, redoc_url=None)

    @app.post("/api/v1/reports")
    async def submit(request: Request, idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        try:
            envelope = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        status, body = recv.receive(envelope if isinstance(envelope, dict) else {}, idempotency_key)
        return JSONResponse(body, status_code=status)

    @app.post("/admin/fail")
    async def fail(request: Request) -> JSONResponse:
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            return JSONResponse({"error": "loopback only"}, status_code=403)
        spec = await request.json()
        recv.fail_next = int(spec.get("count", 1))
        recv.fail_status = int(spec.get("status", 503))
        return JSONResponse({"fail_next": recv.fail_next, "status": recv.fail_status})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "calls": recv.calls}

    return app


def serve_in_thread(settings: Any, platform: SM2PublicKey) -> tuple[Any, threading.Thread, Receiver]:
    """Run the stand-in at the configured report.endpoint (a loopback URL) in a daemon thread; returns (server, thread, receiver)."""
    import uvicorn
    from urllib.parse import urlsplit

    recv = Receiver(receiver_dir(settings), platform)
    u = urlsplit(settings.report.endpoint_url)
    server = uvicorn.Server(uvicorn.Config(create_app(recv), host=u.hostname or "127.0.0.1", port=u.port or 80, log_level="warning"))
    t = threading.Thread(target=server.run, name="govctl-report-receiver", daemon=True)
    t.start()
    return server, t, recv


def main() -> None:
    """Run the stand-in in the foreground."""
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser(description="The province's report endpoint, stood in locally.")
    ap.add_argument("--dir", type=Path, required=True, help="where its key pair, inbox and receipts live")
    ap.add_argument("--platform-key", type=Path, required=True, help="the platform's SM2 public key (PEM) it trusts")
    ap.add_argument("--port", type=int, default=8790)
    a = ap.parse_args()
    recv = Receiver(a.dir, SM2PublicKey.from_pem(a.platform_key.read_text()))
    print(f"province stand-in on http://127.0.0.1:{a.port}/api/v1/reports; its public key: {recv.root / 'province.pub.pem'}")
    uvicorn.run(create_app(recv), host="127.0.0.1", port=a.port, log_level="info")


if __name__ == "__main__":
    main()
