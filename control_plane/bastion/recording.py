"""Session recordings: asciicast v2 when read, sealed as they are written, tamper-evident after.

A recording file is a plain JSON header line, then records ``kind (1 byte) | length (4 bytes) |
body``. ``C`` records are chunks: SM4-GCM over a run of events, under a per-session key wrapped by
the recordings key; each chunk's associated data binds the session, its number and the chain so
far, and the chain is ``h_i = SM3(h_{i-1} || SM3(sealed_i))`` from ``h_0 = SM3(header line)``. A
chunk is sealed at least every ``bastion.chunk_s`` (a crash loses at most that much) and whenever
256 KiB are buffered. The ``E`` record closes the file: chunk count, final hash, end reason, and an
SM2 signature over them by the platform key; the final hash also goes into the audit ledger. A
file cut short by a crash still verifies up to its last whole chunk.

Inside a chunk (format 2) each event is ``time (float64) | kind (1 byte) | length (4 bytes) |
bytes``: what the host printed and what the person typed are kept as the exact bytes, so nothing
binary is lost and recording costs no text decoding on the session's path; the first event is the
asciicast header (``h``, JSON). Readers turn the events into asciicast v2 lines (``[t, "o",
text]``, …). Chunks are sealed on a worker thread, in order, so SM4 does not hold up the relay;
format 1 files (JSON lines in each chunk) still verify and replay.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from control_plane.audit.models import canonical_json
from control_plane.crypto import IntegrityError, SM2PrivateKey, SM2PublicKey, derive_key, sm3, unwrap_key, wrap_key
from control_plane.crypto import sm4

FORMAT = "govctl-sealed-asciicast/2"
FORMATS = ("govctl-sealed-asciicast/1", FORMAT)
CHUNK_MAX = 256 * 1024
BACKLOG_MAX = 16 * 1024 * 1024  # sealed-but-not-written bytes one recording may queue before its writer waits
_REC = struct.Struct(">cI")
_EV = struct.Struct(">dcI")
_SEALER: ThreadPoolExecutor | None = None
_SEALER_LOCK = threading.Lock()


def _sealer() -> ThreadPoolExecutor:
    """One worker for every recording of the process: chunks are sealed off the event loop, each recording's in order."""
    global _SEALER
    with _SEALER_LOCK:
        if _SEALER is None:
            _SEALER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-seal")
        return _SEALER


@lru_cache(maxsize=4)
def recordings_key(passphrase: str, iterations: int) -> bytes:
    """The key that wraps each session's key, from the platform passphrase (once per process)."""
    return derive_key(passphrase, b"govctl-bastion-recordings-v1", max(iterations, 100_000))


def _aad(session: str, seq: int, prev: bytes, fmt: str = FORMAT) -> bytes:
    return f"{fmt}|{session}|{seq}|".encode() + prev.hex().encode()


def _end_body(session: str, chunks: int, final: str, ended: str, reason: str) -> bytes:
    return canonical_json({"session": session, "chunks": chunks, "final_sm3": final, "ended": ended, "reason": reason}).encode()


@dataclass
class Recorder:
    """Writes one session's recording; thread-safe; ``close`` seals and signs it."""

    path: Path
    session: str
    kek: bytes
    signer: SM2PrivateKey
    width: int = 80
    height: int = 24
    meta: dict[str, Any] = field(default_factory=dict)
    chunk_s: float = 1.0

    def __post_init__(self) -> None:
        self._key = sm4.generate_key()
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._seq = 0  # chunks handed to the sealer
        self._t0 = time.monotonic()
        self._last_seal = self._t0
        self._pending: list[Future[None]] = []
        self._backlog = 0
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        header = {"format": FORMAT, "session": self.session, "cipher": "sm4-gcm", "chain": "sm3",
                  "wrapped_key": wrap_key(self.kek, self._key, self.session.encode()).hex(), "signer": self.signer.public_key.key_id}  # fmt: skip
        line = (json.dumps(header, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb", buffering=0)
        self._f.write(line)
        self._chain = sm3(line)  # advanced by the sealer, chunk by chunk
        self._sealed = 0
        cast = {"version": 2, "width": self.width, "height": self.height, "timestamp": int(time.time()),
                "env": {"TERM": self.meta.get("term", "xterm")}, "title": self.meta.get("title", self.session)}  # fmt: skip
        self._add(b"h", json.dumps(cast, ensure_ascii=False).encode())
        self.closed = False

    @property
    def chunks(self) -> int:
        """Chunks sealed and written so far."""
        return self._sealed

    @property
    def chain(self) -> str:
        """The chain hash over the chunks written so far (hex)."""
        return self._chain.hex()

    def _add(self, kind: bytes, data: bytes) -> None:
        self._buf += _EV.pack(time.monotonic() - self._t0, kind, len(data))
        self._buf += data

    def _event(self, kind: bytes, data: bytes) -> None:
        with self._lock:
            if getattr(self, "closed", False):
                return
            self._add(kind, data)
            if len(self._buf) >= CHUNK_MAX:
                self._seal()
        self._throttle()

    def output(self, data: bytes) -> None:
        """What the host sent to the person's terminal (the exact bytes)."""
        if data:
            self._event(b"o", bytes(data))

    def input(self, data: bytes) -> None:
        """What the person typed."""
        if data:
            self._event(b"i", bytes(data))

    def marker(self, label: str) -> None:
        """A command decision, as an asciicast marker (players show them as chapters)."""
        self._event(b"m", label.encode())

    def resize(self, width: int, height: int) -> None:
        """The terminal's new size."""
        self._event(b"r", f"{width}x{height}".encode())

    def tick(self) -> None:
        """Seal what is buffered if the last chunk is older than ``chunk_s`` (called by the gateway's timer)."""
        with self._lock:
            if not self.closed and self._buf and time.monotonic() - self._last_seal >= self.chunk_s:
                self._seal(sync=True)

    def _seal(self, sync: bool = False) -> None:
        """Hand the buffered events to the sealer (caller holds the lock)."""
        plain, self._buf = bytes(self._buf), bytearray()
        seq = self._seq
        self._seq += 1
        self._last_seal = time.monotonic()
        self._backlog += len(plain)
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(_sealer().submit(self._write_chunk, seq, plain, sync))

    def _write_chunk(self, seq: int, plain: bytes, sync: bool) -> None:
        """On the sealer thread, in order: encrypt against the chain so far, write, advance the chain."""
        sealed = sm4.gcm_encrypt(self._key, plain, _aad(self.session, seq, self._chain))
        self._f.write(_REC.pack(b"C", len(sealed)) + sealed)
        if sync:
            os.fsync(self._f.fileno())
        self._chain = sm3(self._chain + sm3(sealed))
        self._sealed = seq + 1
        self._backlog -= len(plain)

    def _throttle(self) -> None:
        """A session printing faster than SM4 seals waits here for its oldest chunk (bounded memory, nothing dropped)."""
        while self._backlog > BACKLOG_MAX:
            with self._lock:
                oldest = next((f for f in self._pending if not f.done()), None)
            if oldest is None:
                return
            oldest.result()

    def flush(self) -> None:
        """Wait until every chunk handed to the sealer is written (a failed write raises here)."""
        with self._lock:
            pending = list(self._pending)
        for f in pending:
            f.result()

    def close(self, reason: str, ended: str) -> dict[str, Any]:
        """Seal the rest, sign the end, and return what the ledger records."""
        with self._lock:
            if self.closed:
                return {"chunks": self._sealed, "final_sm3": self.chain}
            if self._buf:
                self._seal()
            self.closed = True
            pending = list(self._pending)
        for f in pending:
            f.result()
        body = _end_body(self.session, self._sealed, self.chain, ended, reason)
        end = {"chunks": self._sealed, "final_sm3": self.chain, "ended": ended, "reason": reason,
               "signature": self.signer.sign(body).hex(), "signer": self.signer.public_key.key_id}  # fmt: skip
        raw = json.dumps(end, sort_keys=True).encode()
        self._f.write(_REC.pack(b"E", len(raw)) + raw)
        os.fsync(self._f.fileno())
        self._f.close()
        return {"chunks": self._sealed, "final_sm3": self.chain}


class _Cast:
    """Turns a recording's chunks into asciicast v2 events (each stream decoded as UTF-8 across chunk boundaries)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._dec = {k: codecs.getincrementaldecoder("utf-8")("replace") for k in ("o", "i")}

    def events(self, plain: bytes) -> list[list[Any]]:
        """The asciicast events of one decrypted chunk (the first chunk's first is the header)."""
        if self.fmt == FORMATS[0]:
            return [json.loads(ln) for ln in plain.decode().splitlines() if ln]
        out: list[list[Any]] = []
        pos = 0
        while pos + _EV.size <= len(plain):
            t, kind, n = _EV.unpack_from(plain, pos)
            body = plain[pos + _EV.size:pos + _EV.size + n]
            pos += _EV.size + n
            k = kind.decode()
            if k == "h":
                out.append(json.loads(body))
            elif k in self._dec:
                text = self._dec[k].decode(body)
                if text:
                    out.append([round(t, 6), k, text])
            else:
                out.append([round(t, 6), k, body.decode("utf-8", "replace")])
        return out


@dataclass
class Verified:
    """What a recording proves."""

    session: str
    chunks: int
    final_sm3: str
    complete: bool  # an end record, signed, matching the chain
    signed_by: str | None
    reason: str | None
    trailing_bytes: int  # bytes after the last whole record (a crash mid-write)
    events: list[list[Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (without the events)."""
        return {"session": self.session, "chunks": self.chunks, "final_sm3": self.final_sm3, "complete": self.complete,
                "signed_by": self.signed_by, "end_reason": self.reason, "trailing_bytes": self.trailing_bytes}  # fmt: skip


def _records(data: bytes, start: int) -> Iterator[tuple[bytes, bytes, int]]:
    pos = start
    while pos + _REC.size <= len(data):
        kind, n = _REC.unpack_from(data, pos)
        if pos + _REC.size + n > len(data):
            return
        yield kind, data[pos + _REC.size:pos + _REC.size + n], pos + _REC.size + n
        pos += _REC.size + n


def verify(path: Path, kek: bytes, public: SM2PublicKey | None = None, *, expect_final: str | None = None, events: bool = False) -> Verified:
    """Decrypt and check every chunk and the chain; an altered, reordered or removed chunk raises IntegrityError naming it.

    ``public`` checks the end record's signature; ``expect_final`` (from the audit ledger) checks
    that the chain ends where the ledger says it does.
    """
    data = path.read_bytes()
    nl = data.find(b"\n")
    if nl < 0:
        raise IntegrityError(f"{path}: no header line: not a govctl recording")
    header = json.loads(data[:nl])
    fmt = header.get("format")
    if fmt not in FORMATS:
        raise IntegrityError(f"{path}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    session = header["session"]
    key = unwrap_key(kek, bytes.fromhex(header["wrapped_key"]), session.encode())
    chain = sm3(data[:nl + 1])
    seq, end, used = 0, None, nl + 1
    out: list[list[Any]] = []
    cast = _Cast(fmt)
    for kind, body, nxt in _records(data, nl + 1):
        if kind == b"C":
            if end is not None:
                raise IntegrityError(f"{path}: a chunk follows the end record")
            try:
                plain = sm4.gcm_decrypt(key, body, _aad(session, seq, chain, fmt))
            except IntegrityError:
                raise IntegrityError(f"{path}: chunk {seq} does not verify: altered, reordered or from another session") from None
            if events:
                out.extend(cast.events(plain))
            chain = sm3(chain + sm3(body))
            seq += 1
        elif kind == b"E":
            end = json.loads(body)
        else:
            raise IntegrityError(f"{path}: unknown record type {kind!r} after chunk {seq}")
        used = nxt
    complete, signer, reason = False, None, None
    if end is not None:
        if end["chunks"] != seq or end["final_sm3"] != chain.hex():
            raise IntegrityError(f"{path}: the end record says {end['chunks']} chunks ending {end['final_sm3'][:16]}…, the file has {seq} ending {chain.hex()[:16]}…")
        if public is not None:
            public.verify(_end_body(session, seq, chain.hex(), end["ended"], end["reason"]), bytes.fromhex(end["signature"]))
            signer = public.key_id
        complete, reason = True, end["reason"]
    if expect_final is not None and expect_final != chain.hex():
        raise IntegrityError(f"{path}: the audit ledger records the chain ending {expect_final[:16]}…, the file ends {chain.hex()[:16]}… (chunks removed or added)")
    return Verified(session, seq, chain.hex(), complete, signer, reason, len(data) - used, out if events else [])


def follow(path: Path, kek: bytes, *, stop: Any, poll_s: float = 0.2) -> Iterator[list[Any]]:
    """Events of a recording as they are sealed (a live session's read-only view), until its end record or ``stop()``.

    Each chunk is read, checked against the chain and decrypted once: following a long session costs
    what the new chunks cost, not the whole file again at every poll.
    """
    while not path.exists():
        if stop():
            return
        time.sleep(poll_s)
    with path.open("rb") as f:
        pending = b""
        key = None
        session, chain, seq = "", b"", 0
        cast = _Cast(FORMAT)
        while True:
            pending += f.read()
            if key is None:
                nl = pending.find(b"\n")
                if nl > 0:
                    header = json.loads(pending[:nl])
                    fmt = header.get("format")
                    if fmt not in FORMATS:
                        raise IntegrityError(f"{path}: format {fmt!r} is not one of {', '.join(FORMATS)}")
                    cast = _Cast(fmt)
                    session = header["session"]
                    key = unwrap_key(kek, bytes.fromhex(header["wrapped_key"]), session.encode())
                    chain, pending = sm3(pending[:nl + 1]), pending[nl + 1:]
            if key is not None:
                used = 0
                for kind, body, nxt in _records(pending, 0):
                    if kind == b"E":
                        return
                    try:
                        plain = sm4.gcm_decrypt(key, body, _aad(session, seq, chain, fmt))
                    except IntegrityError:
                        raise IntegrityError(f"{path}: chunk {seq} does not verify: altered, reordered or from another session") from None
                    yield from cast.events(plain)
                    chain = sm3(chain + sm3(body))
                    seq += 1
                    used = nxt
                pending = pending[used:]
            if stop():
                return
            time.sleep(poll_s)
