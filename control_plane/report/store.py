"""Built months as immutable, signed revisions.

A month is built once (revision 1). Building it again is refused; a correction is a new
revision that names the one it supersedes, a reason and the approvers who signed it off (the
gate's approval of ``report.build`` with ``correction: true``). Files are written once, made
read-only, and their SM3 digest and signature are in the state DB; ``verify`` re-reads them.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
from sqlalchemy import Column, Float, Integer, String, Table, Text, and_, func, select

from control_plane.crypto import SM2PublicKey, sm3_hex
from control_plane.errors import GovctlError
from control_plane.report.seal import canonical, sign, verify
from control_plane.resources import folder
from control_plane.db import metadata

if TYPE_CHECKING:
    from control_plane.context import Context

SCHEMA_FILE = folder("monitors") / "report.schema.json"

meta = metadata
revisions = Table(
    "report_revisions", meta,
    Column("month", String(7), primary_key=True), Column("revision", Integer, primary_key=True),
    Column("created", String(32), nullable=False), Column("built_by", String(128), nullable=False),
    Column("digest_sm3", String(64), nullable=False), Column("key_id", String(64), nullable=False),
    Column("path", Text, nullable=False), Column("reason", Text), Column("signoff", Text), Column("coverage_pct", Float),
)  # fmt: skip


class ReportError(GovctlError):
    """A report that cannot be built, found or trusted."""

    http_status = 409
    exit_code = 1


class ReportExists(ReportError):
    """The month is already built; a correction must say why and be approved."""

    http_status = 409


@dataclass
class Built:
    """One stored revision."""

    month: str
    revision: int
    path: Path
    digest_sm3: str
    created: str
    built_by: str
    reason: str | None
    signoff: list[str]
    coverage_pct: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {**self.__dict__, "path": str(self.path)}


def schema() -> dict[str, Any]:
    """The published JSON Schema."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate(doc: dict[str, Any]) -> None:
    """Raise ReportError with the first schema violation's path."""
    errs = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(doc), key=lambda e: list(e.path))
    if errs:
        e = errs[0]
        raise ReportError(f"report does not match monitors/report.schema.json at {'/'.join(str(p) for p in e.path) or '(root)'}: {e.message[:300]}")


def _row(rt: Context, r: Any) -> Built:
    b = Built(r.month, r.revision, Path(r.path), r.digest_sm3, r.created, r.built_by, r.reason, json.loads(r.signoff or "[]"), r.coverage_pct)
    if not (b.path / "report.json").exists() and rt.settings.report.archive_bucket:
        b.path = fetch_archived(rt, b)  # built by a control plane on another host: its files come from the archive
    return b


def _archive_prefix(b: Built) -> str:
    """Where a revision's files are archived: the digest is in the name, so an attempt that never reached the DB cannot block a retry."""
    return f"{b.month}/r{b.revision}/{b.digest_sm3}/"


def archive(rt: Context, b: Built) -> int:
    """Write every file of a revision once to ``report.archive_bucket``; returns how many."""
    st = rt.object_store(rt.settings.report.archive_bucket)
    files = sorted(f for f in b.path.iterdir() if f.is_file())
    for f in files:
        st.write_once(_archive_prefix(b) + f.name, f.read_bytes())
    return len(files)


def fetch_archived(rt: Context, b: Built) -> Path:
    """This host's copy of an archived revision (downloaded once and checked against the recorded SM3)."""
    local = rt.settings.var / "reports" / b.month / f"r{b.revision}"
    if (local / "report.json").exists():
        return local
    st = rt.object_store(rt.settings.report.archive_bucket)
    prefix = _archive_prefix(b)
    try:
        names = st.list(prefix)
        blobs = {n[len(prefix):]: st.read(n) for n in names}
    except Exception as exc:  # noqa: BLE001 - whatever the store says, the report is not here
        raise ReportError(f"{b.month} r{b.revision}: its files are not on this host and the archive could not be read ({type(exc).__name__})",
                          hint="start the object store (govctl services up) and try again") from None  # fmt: skip
    if sm3_hex(blobs.get("report.json", b"")) != b.digest_sm3:
        raise ReportError(f"{b.month} r{b.revision}: the archived report.json is missing or does not match the recorded SM3",
                          hint="the archive was altered; restore the revision from the backup repository")  # fmt: skip
    for name in blobs:  # every name checked before anything is written
        if "/" in name or name.startswith(".") or not name:
            raise ReportError(f"{b.month} r{b.revision}: unexpected archived object {name!r}", hint="the archive was altered")
    if json.loads(blobs.get("report.sig.json", b"{}")).get("digest_sm3") != b.digest_sm3:
        raise ReportError(f"{b.month} r{b.revision}: the archived signature block is missing or signs other bytes", hint="the archive was altered")
    tmp = local.parent / f".fetch-r{b.revision}-{os.getpid()}-{threading.get_ident()}"
    tmp.mkdir(parents=True, exist_ok=True)
    # only what the recorded SM3 vouches for is taken (the JSON and its signature block); the readable forms are rendered
    # here again from that JSON rather than trusted from the bucket
    for name in ("report.json", "report.sig.json"):
        (tmp / name).write_bytes(blobs[name])
    if set(blobs) - {"report.json", "report.sig.json"}:
        from control_plane.report.render import render_all

        render_all(json.loads(blobs["report.json"]), tmp)
    for f in tmp.iterdir():
        os.chmod(f, 0o444)
    try:
        tmp.rename(local)
    except OSError:  # another thread fetched it at the same moment
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return local


def latest(rt: Context, month: str) -> Built | None:
    """The newest revision of a month."""
    with rt.engine.connect() as c:
        r = c.execute(select(revisions).where(revisions.c.month == month).order_by(revisions.c.revision.desc()).limit(1)).first()
    return _row(rt, r) if r else None


def get(rt: Context, month: str, revision: int | None = None) -> Built:
    """A revision (default: the newest)."""
    if revision is None:
        b = latest(rt, month)
    else:
        with rt.engine.connect() as c:
            r = c.execute(select(revisions).where(and_(revisions.c.month == month, revisions.c.revision == revision))).first()
        b = _row(rt, r) if r else None
    if b is None:
        raise ReportError(f"no report for {month}" + (f" revision {revision}" if revision else ""), hint="build it: govctl report build --month " + month)
    return b


def all_revisions(rt: Context) -> list[Built]:
    """Every stored revision, newest month first."""
    with rt.engine.connect() as c:
        return [_row(rt, r) for r in c.execute(select(revisions).order_by(revisions.c.month.desc(), revisions.c.revision.desc()))]


def load(b: Built) -> dict[str, Any]:
    """The report document of a revision."""
    return json.loads((b.path / "report.json").read_text(encoding="utf-8"))


def build(rt: Context, month: str, *, actor: str, reason: str | None = None, signoff: list[str] | None = None,
          prom_url: str | None = None, now: datetime | None = None, render: bool = True) -> Built:  # fmt: skip
    """Build, validate, sign and store a month. A second build needs a reason (a correction)."""
    from control_plane.report.build import Builder, previous_month
    from control_plane.report.prom import Prom
    from control_plane.report.registry import load_registry

    prior = latest(rt, month)
    if prior is not None and not reason and not load(prior).get("final", True):
        from control_plane.report.build import month_window

        if month_window(month)[1] <= (now or datetime.now(timezone.utc)):
            reason = f"final build after the month ended (revision {prior.revision} was provisional)"
    if prior is not None and not reason:
        raise ReportExists(f"{month} is already built (revision {prior.revision}, {prior.created}); reports are immutable",
                           hint="a correction is a new revision: govctl report build --month M --correct 'why' (needs an approver's sign-off)")  # fmt: skip
    s = rt.settings
    reg = load_registry(s.path(s.report.registry_file) if s.report.registry_file else None)
    prom = Prom(prom_url or s.services.prometheus.url, timeout=s.report.timeout_s)
    prev = latest(rt, previous_month(month))
    builder = Builder(rt, reg, prom, month, now=now)
    doc = builder.build(load(prev) if prev else None)
    revision = (prior.revision + 1) if prior else 1
    doc["revision"] = revision
    doc["supersedes"] = None
    if prior is not None:
        doc["supersedes"] = {"revision": prior.revision, "sha256_sm3": prior.digest_sm3, "reason": reason, "signoff": signoff or []}
    doc["provenance"]["built_by"] = actor
    validate(doc)
    data = canonical(doc)
    sig = sign(rt.signer, data)
    out = s.var / "reports" / month / f"r{revision}"
    if out.exists():  # a crashed earlier attempt that never reached the DB: its files are not a revision
        for f in out.iterdir():
            os.chmod(f, 0o644)
            f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(data)
    (out / "report.sig.json").write_text(json.dumps(sig, indent=1))
    if render:
        from control_plane.report.render import render_all

        render_all(doc, out)
    for f in out.iterdir():
        os.chmod(f, 0o444)
    b = Built(month, revision, out, sig["digest_sm3"], datetime.now(timezone.utc).isoformat(), actor, reason, signoff or [],
              doc["coverage"]["prometheus_pct"])  # fmt: skip
    if s.report.archive_bucket:  # written once before the revision exists: a store that refuses fails the build, to be retried
        archive(rt, b)
    with rt.engine.begin() as c:
        c.execute(revisions.insert().values(month=month, revision=revision, created=b.created, built_by=actor, digest_sm3=b.digest_sm3,
                                            key_id=sig["key_id"], path=str(out), reason=reason, signoff=json.dumps(signoff or []),
                                            coverage_pct=b.coverage_pct))  # fmt: skip
    return b


def verify_revision(rt: Context, b: Built, trusted: SM2PublicKey | None = None) -> dict[str, Any]:
    """Re-hash the stored JSON, check it against the DB and the signature, and check the schema."""
    data = (b.path / "report.json").read_bytes()
    block = json.loads((b.path / "report.sig.json").read_text())
    if sm3_hex(data) != b.digest_sm3:
        raise ReportError(f"{b.month} r{b.revision}: report.json changed since it was built (SM3 {sm3_hex(data)[:16]}… ≠ recorded {b.digest_sm3[:16]}…)",
                          hint="restore it from the backup pool; a correction must be a new revision")  # fmt: skip
    verify(data, block, trusted or rt.signer.public_key)
    validate(json.loads(data))
    out = {"month": b.month, "revision": b.revision, "digest_sm3": b.digest_sm3, "key_id": block["key_id"], "ok": True}
    if rt.settings.report.archive_bucket:
        st = rt.object_store(rt.settings.report.archive_bucket)
        try:
            archived = st.read(_archive_prefix(b) + "report.json")
        except FileNotFoundError:
            raise ReportError(f"{b.month} r{b.revision}: no archived copy in {rt.settings.report.archive_bucket}",
                              hint="the archived copy was deleted (the bucket refuses rewrites, not deletes); the files here still verify: "
                                   "put them back from the backup repository") from None  # fmt: skip
        if sm3_hex(archived) != b.digest_sm3:
            raise ReportError(f"{b.month} r{b.revision}: the archived report.json differs from the recorded SM3", hint="the archive was altered")
        out["archived"] = f"s3://{rt.settings.report.archive_bucket}/{_archive_prefix(b)}"
    return out


def count(rt: Context) -> int:
    """How many revisions exist."""
    with rt.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(revisions)).scalar() or 0)


__all__ = ["archive", "fetch_archived", "Built", "ReportError", "ReportExists", "build", "get", "latest", "load", "verify_revision", "all_revisions", "validate"]
