"""Attacks on the console's sign-in, without a browser: an open redirect after sign-in, a session outliving a disabled account, a replayed code."""

from __future__ import annotations

import time
from typing import Any

import pyotp
from fastapi.testclient import TestClient

from control_plane.api.app import create_app
from control_plane.context import Context
from control_plane.gate import iam

PASSWORD = "Gov-cloud-2026!"


def _person(ctx: Context, name: str) -> pyotp.TOTP:
    _, code = iam.create_user(ctx, name, roles=["auditor"])
    totp = pyotp.parse_uri(iam.start_enrolment(ctx, name, code))
    iam.finish_enrolment(ctx, name, code, totp.at(time.time() - 30))
    iam.set_password(ctx, name, PASSWORD)
    return totp


def _client(ctx: Context) -> Any:
    return TestClient(create_app(ctx), base_url="http://127.0.0.1", client=("127.0.0.1", 50000), raise_server_exceptions=False)


def test_sign_in_never_redirects_off_site(sqlite_runtime: Context) -> None:
    """``next`` pointing at another site (//evil, a backslash, a full URL) lands on the overview instead."""
    c = _client(sqlite_runtime)
    for i, target in enumerate(("//evil.example/x", "/\\evil.example", "https://evil.example/")):
        totp = _person(sqlite_runtime, f"eve{i}")  # one person each: a code is good once
        r = c.post("/login", data={"username": f"eve{i}", "password": PASSWORD, "otp": totp.now(), "next": target}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", (target, r.headers.get("location"))


def test_a_session_ends_when_its_person_is_disabled_and_a_code_works_once(sqlite_runtime: Context) -> None:
    """Disabling someone ends their console session at the next request; the code they signed in with cannot sign in again."""
    totp = _person(sqlite_runtime, "mallory")
    c = _client(sqlite_runtime)
    code = totp.now()
    assert c.post("/login", data={"username": "mallory", "password": PASSWORD, "otp": code}, follow_redirects=False).status_code == 303
    assert c.get("/audit", follow_redirects=False).status_code == 200
    again = _client(sqlite_runtime).post("/login", data={"username": "mallory", "password": PASSWORD, "otp": code}, follow_redirects=False)
    assert again.status_code == 401 and "govctl_session" not in again.headers.get("set-cookie", "")
    iam.change_user(sqlite_runtime, "mallory", disabled=True)
    r = c.get("/audit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
