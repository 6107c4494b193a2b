"""The backup repository (see dr/FORMAT.md): content-defined chunks named by SM3-HMAC, zstd,
SM4-GCM with a fresh nonce per object, packs plus an index, SM2-signed snapshot manifests,
write-once files, and a lock the kernel releases when its holder dies."""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import zstandard

from control_plane.crypto import IntegrityError, InvalidSignature, SM2PrivateKey, SM2PublicKey, hmac_sm3, sm3_hex
from control_plane.crypto.sm3 import sm3_tree_hex
from control_plane.crypto import sm4
from control_plane.crypto.keys import derive_key, unwrap_key, wrap_key
from control_plane.errors import GovctlError
from control_plane.objects import Backend, LocalBackend

FORMAT = "govctl-repo/1"
PACK_TARGET = 16 * 1024 * 1024
CHUNKER = {"min": 256 * 1024, "avg": 1024 * 1024, "max": 4 * 1024 * 1024}


class RepoError(GovctlError):
    """The repository cannot be used as asked."""

    http_status = 409
    exit_code = 1


class WrongKey(RepoError):
    """The passphrase does not unwrap the master key."""

    http_status = 403


class Locked(RepoError):
    """Another process holds the repository lock."""

    http_status = 409


# snapshots whose signature this process has checked, by (repository, trusted key, id); snapshot files are
# write-once and named by their SM3, so listing a repository every minute costs a hash, not an SM2 verify, per snapshot
_VERIFIED: dict[tuple[str, str, str], dict[str, Any]] = {}


@dataclass
class BlobRef:
    """Where a blob lives."""

    pack: str
    type: str
    offset: int
    length: int
    raw_length: int


@dataclass
class Keys:
    """The unwrapped master key's two halves."""

    enc: bytes
    ident: bytes

    def blob_id(self, data: bytes) -> str:
        """HMAC-SM3 of the plaintext."""
        return hmac_sm3(self.ident, data).hex()

    def blob_ids(self, chunks: list[bytes]) -> list[str]:
        """``blob_id`` of each chunk, many at once (sixteen-lane SM3 where the CPU has it)."""
        from control_plane.crypto.sm3 import hmac_sm3_many

        return [d.hex() for d in hmac_sm3_many(self.ident, chunks)]


IN_PROCESS_WAIT_S = 1800.0  # a writer in this process waits for another of its threads, not fails


class _InProcess:
    """The threads of this process that hold one repository's lock (flock cannot tell them apart)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.writer: int | None = None
        self.depth = 0
        self.readers = 0


_LOCAL: dict[str, _InProcess] = {}
_LOCAL_GUARD = threading.Lock()


def _local(root: Path) -> _InProcess:
    key = str(root.resolve())
    with _LOCAL_GUARD:
        return _LOCAL.setdefault(key, _InProcess())


class Lock:
    """flock on <repo>/lock: exclusive for writers, shared for readers; owner info in lock.owner.

    Other processes are kept out by the flock (a holder elsewhere is ``Locked`` after ``wait_s``).
    Threads of this process are ordered by an in-process reader/writer lock first: a second
    writer here waits for the first instead of failing with "locked by <its own pid>", and a
    thread that already holds the lock may take it again.
    """

    def __init__(self, root: Path, *, exclusive: bool, command: str, wait_s: float = 0.0) -> None:
        self.root, self.exclusive, self.command, self.wait_s = root, exclusive, command, wait_s
        self.fd: int | None = None
        self._nested = False

    def _enter_local(self) -> None:
        loc, me = _local(self.root), threading.get_ident()
        with loc.cond:
            if loc.writer == me:  # this thread already writes: nested, no second flock (it would conflict with our own)
                self._nested = True
                loc.depth += 1
                return
            free = (lambda: loc.writer is None and loc.readers == 0) if self.exclusive else (lambda: loc.writer is None)
            if not loc.cond.wait_for(free, timeout=max(self.wait_s, IN_PROCESS_WAIT_S)):
                raise Locked(f"the repository {self.root} is still in use by another task of this process after {IN_PROCESS_WAIT_S:.0f} s",
                             hint="see govctl jobs runs for what is running")  # fmt: skip
            if self.exclusive:
                loc.writer, loc.depth = me, 1
            else:
                loc.readers += 1
            # readers each take their own shared flock (shared flocks never conflict); writers here are excluded above

    def _exit_local(self) -> None:
        loc = _local(self.root)
        with loc.cond:
            if loc.writer == threading.get_ident():
                loc.depth -= 1
                if loc.depth == 0:
                    loc.writer = None
            else:
                loc.readers -= 1
            loc.cond.notify_all()

    def __enter__(self) -> Lock:
        self._enter_local()
        if self._nested:
            return self
        try:
            self._flock()
        except BaseException:
            self._exit_local()
            raise
        return self

    def _flock(self) -> None:
        self.fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise Locked(f"the repository {self.root} is locked by {self.holder()}",
                                 hint="wait for it to finish (the lock goes away by itself if that process dies)") from None  # fmt: skip
                time.sleep(0.2)
        if self.exclusive:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            (self.root / "lock.owner").write_text(json.dumps(info))

    def holder(self) -> str:
        """Who holds the lock, as far as lock.owner says."""
        try:
            o = json.loads((self.root / "lock.owner").read_text())
            return f"pid {o['pid']} on {o['host']} ({o['command']}, since {o['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def __exit__(self, *exc: object) -> None:
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                self.fd = None
        finally:
            self._exit_local()


class Repository:
    """An opened repository."""

    def __init__(self, root: Path, keys: Keys, config: dict[str, Any], signer: SM2PrivateKey | None, trusted: SM2PublicKey,
                 backend: Backend | None = None) -> None:  # fmt: skip
        self.root = Path(root)  # the lock and local bookkeeping live here; objects in the backend
        self.backend: Backend = backend or LocalBackend(self.root)
        self.keys = keys
        self.config = config
        self.signer = signer
        self.trusted = trusted
        self._zl = threading.local()  # a ZstdCompressor is not safe to share between threads
        self._index: dict[str, BlobRef] | None = None

    # -- creating and opening -------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, passphrase: str, *, signer: SM2PrivateKey | None, iterations: int = 200_000, pack_size: int = PACK_TARGET,
             copy_of: Repository | None = None, backend: Backend | None = None) -> Repository:  # fmt: skip
        """Create an empty repository; refuse a directory that already holds one.

        ``copy_of``: a copy target for that repository — the same master key (wrapped under this
        repository's own passphrase and id) and chunker, so packs can be copied byte for byte.
        """
        root = Path(root)
        backend = backend or LocalBackend(root)
        if backend.exists("config"):
            raise RepoError(f"{root} already holds a repository", hint="open it, or choose an empty directory")
        for d in ("data", "index", "snapshots", "keys", "state") if isinstance(backend, LocalBackend) else ("state",):
            (root / d).mkdir(parents=True, exist_ok=True)
        rid = uuid.uuid4().hex
        master = copy_of.keys.enc + copy_of.keys.ident if copy_of else secrets.token_bytes(48)
        salt = secrets.token_bytes(16)
        wrapped = wrap_key(derive_key(passphrase, salt, iterations), master, f"govctl-repo-master|{rid}".encode())
        backend.write_once("keys/master.json", json.dumps({"v": 1, "kek": "pbkdf2-hmac-sm3", "salt": base64.b64encode(salt).decode(),
                                                           "iterations": iterations, "wrapped": base64.b64encode(wrapped).decode()}).encode())  # fmt: skip
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if copy_of is not None:
            cfg = {**copy_of.config, "id": rid, "created": created, "copy_of": copy_of.config["id"]}
        else:
            assert signer is not None, "a new repository needs the signing key"
            cfg = {"format": FORMAT, "id": rid, "created": created, "chunker": CHUNKER, "compression": "zstd", "zstd_level": 3,
                   "pack_size": pack_size, "signer_key_id": signer.public_key.key_id, "pack_hash": "sm3-tree-1m"}  # fmt: skip
        backend.write_once("config", json.dumps(cfg, indent=1).encode())
        trusted = copy_of.trusted if copy_of else signer.public_key  # type: ignore[union-attr]
        return cls.open(root, passphrase, signer=signer, trusted=trusted, backend=backend)

    @classmethod
    def open(cls, root: Path, passphrase: str, *, signer: SM2PrivateKey | None, trusted: SM2PublicKey,
             backend: Backend | None = None) -> Repository:  # fmt: skip
        """Open with the passphrase; a wrong one is a clear error. Objects come from ``backend`` (default: files under ``root``)."""
        root = Path(root)
        backend = backend or LocalBackend(root)
        try:
            cfg = json.loads(backend.read("config"))
            mk = json.loads(backend.read("keys/master.json"))
        except FileNotFoundError:
            raise RepoError(f"no repository at {root}", hint="create one: govctl dr init") from None
        except ValueError as exc:
            raise RepoError(f"{root}: config or key file is damaged ({exc})") from None
        if cfg.get("format") != FORMAT:
            raise RepoError(f"{root}: unknown repository format {cfg.get('format')!r}", hint=f"this govctl reads {FORMAT}")
        kek = derive_key(passphrase, base64.b64decode(mk["salt"]), int(mk["iterations"]))
        try:
            master = unwrap_key(kek, base64.b64decode(mk["wrapped"]), f"govctl-repo-master|{cfg['id']}".encode())
        except IntegrityError:
            raise WrongKey(f"wrong passphrase for the repository at {root} (the master key does not unwrap)",
                           hint="use the passphrase the repository was created with (dr.passphrase_file)") from None  # fmt: skip
        if not isinstance(backend, LocalBackend):
            (root / "state").mkdir(parents=True, exist_ok=True)  # the lock and local bookkeeping stay on this host
        return cls(root, Keys(master[:16], master[16:48]), cfg, signer, trusted, backend)

    # -- objects --------------------------------------------------------------------------------

    def seal_blob(self, blob_id: str, data: bytes) -> bytes:
        """zstd then SM4-GCM with the id as associated data."""
        zc = getattr(self._zl, "c", None)
        if zc is None:
            zc = self._zl.c = zstandard.ZstdCompressor(level=int(self.config.get("zstd_level", 3)))
        return sm4.gcm_encrypt(self.keys.enc, zc.compress(data), bytes.fromhex(blob_id))

    def open_blob(self, blob_id: str, stored: bytes) -> bytes:
        """Decrypt, decompress and check the id; IntegrityError names the blob."""
        data = self._unseal(blob_id, stored)
        if self.keys.blob_id(data) != blob_id:
            raise IntegrityError(f"blob {blob_id[:16]}… decrypts but its content does not hash to its id")
        return data

    def _unseal(self, blob_id: str, stored: bytes) -> bytes:
        try:
            return zstandard.ZstdDecompressor().decompress(sm4.gcm_decrypt(self.keys.enc, stored, bytes.fromhex(blob_id)))
        except (IntegrityError, zstandard.ZstdError) as exc:
            raise IntegrityError(f"blob {blob_id[:16]}… does not authenticate: {getattr(exc, 'message', exc)}") from None

    def _enc(self, data: bytes, aad: bytes) -> bytes:
        return sm4.gcm_encrypt(self.keys.enc, data, aad)

    def _dec(self, data: bytes, aad: bytes, what: str) -> bytes:
        try:
            return sm4.gcm_decrypt(self.keys.enc, data, aad)
        except IntegrityError:
            raise IntegrityError(f"{what} does not authenticate (altered, truncated or not from this repository)") from None

    # -- packs and the index --------------------------------------------------------------------

    @staticmethod
    def pack_name(pack_id: str) -> str:
        """A pack's object name."""
        return f"data/{pack_id[:2]}/{pack_id}"

    def pack_path(self, pack_id: str) -> Path:
        """Where a pack lives on a local backend (for tools and tests that look inside)."""
        return self.root / self.pack_name(pack_id)

    def pack_digest(self, body: bytes) -> str:
        """A pack's name from its bytes: SM3 of the whole file (repositories made before pack_hash), or the one-level
        SM3 tree over 1 MiB pieces (``pack_hash: sm3-tree-1m``: the pieces hash in parallel lanes)."""
        scheme = self.config.get("pack_hash", "sm3")
        if scheme == "sm3-tree-1m":
            return sm3_tree_hex(body, 1 << 20)
        if scheme == "sm3":
            return sm3_hex(body)
        raise RepoError(f"repository {self.root} names packs by {scheme!r}, which this version does not know", hint="upgrade govctl")

    def write_pack(self, blobs: list[tuple[str, str, bytes, int]]) -> tuple[str, list[list[Any]]]:
        """Write blobs [(id, type, sealed, raw_len)] as one pack; returns (pack id, header entries)."""
        entries, parts, off = [], [], 0
        for bid, typ, sealed, raw in blobs:
            entries.append([bid, typ, off, len(sealed), raw])
            parts.append(sealed)
            off += len(sealed)
        header = self._enc(json.dumps(entries).encode(), b"govctl-pack-header")
        body = b"".join([*parts, header, struct.pack(">I", len(header))])  # one copy of the pack, not two
        pid = self.pack_digest(body)
        self.backend.write_once(self.pack_name(pid), body)
        return pid, entries

    def read_pack_header(self, pack_id: str, data: bytes | None = None) -> list[list[Any]]:
        """The pack's own list of blobs (from its encrypted trailer)."""
        if data is None:
            (n,) = struct.unpack(">I", self.backend.read_tail(self.pack_name(pack_id), 4))
            hdr = self.backend.read_tail(self.pack_name(pack_id), 4 + n)[:n]
        else:
            (n,) = struct.unpack(">I", data[-4:])
            hdr = data[-4 - n : -4]
        return json.loads(self._dec(hdr, b"govctl-pack-header", f"pack {pack_id[:16]}… header"))

    def write_index(self, packs: dict[str, list[list[Any]]]) -> str:
        """Record which blobs are in which (already durable) packs."""
        data = self._enc(json.dumps({"packs": packs}).encode(), b"govctl-index")
        iid = sm3_hex(data)
        self.backend.write_once(f"index/{iid}", data)
        if self._index is not None:
            for pid, entries in packs.items():
                for bid, typ, off, ln, raw in entries:
                    self._index.setdefault(bid, BlobRef(pid, typ, off, ln, raw))
        return iid

    def index(self) -> dict[str, BlobRef]:
        """Every indexed blob (loaded once)."""
        if self._index is None:
            idx: dict[str, BlobRef] = {}
            for name in self.backend.list("index/"):
                iid = name.rsplit("/", 1)[-1]
                data = self.backend.read(name)
                if sm3_hex(data) != iid:
                    raise IntegrityError(f"index file {iid[:16]}… does not match its name (altered)")
                for pid, entries in json.loads(self._dec(data, b"govctl-index", f"index {iid[:16]}…"))["packs"].items():
                    for bid, typ, off, ln, raw in entries:
                        idx.setdefault(bid, BlobRef(pid, typ, off, ln, raw))
            self._index = idx
        return self._index

    def packs_on_disk(self) -> set[str]:
        """Every complete pack file."""
        return {n.rsplit("/", 1)[-1] for n in self.backend.list("data/")}

    def recover_unindexed(self) -> int:
        """Index packs that landed but were never indexed (a writer killed in between); returns how many."""
        indexed = {r.pack for r in self.index().values()}
        found: dict[str, list[list[Any]]] = {}
        for pid in sorted(self.packs_on_disk() - indexed):
            try:
                found[pid] = self.read_pack_header(pid)
            except (IntegrityError, OSError, ValueError, struct.error):
                continue  # not readable: check reports it; never referenced by any snapshot
        if found:
            self.write_index(found)
        clean = getattr(self.backend, "clean_temporaries", None)
        if clean:  # temporaries of a killed writer
            clean()
        return len(found)

    def read_blob(self, blob_id: str) -> bytes:
        """A blob's plaintext."""
        return self.open_blob(blob_id, self._stored(blob_id))

    def read_blobs(self, blob_ids: list[str]) -> list[bytes]:
        """Several blobs' plaintexts, their ids checked in one multi-lane SM3 pass."""
        datas = [self._unseal(b, self._stored(b)) for b in blob_ids]
        for bid, got in zip(blob_ids, self.keys.blob_ids(datas)):
            if got != bid:
                raise IntegrityError(f"blob {bid[:16]}… decrypts but its content does not hash to its id")
        return datas

    def _stored(self, blob_id: str) -> bytes:
        ref = self.index().get(blob_id)
        if ref is None:
            raise RepoError(f"blob {blob_id[:16]}… is not in the index (missing data)")
        try:
            return self.backend.read_range(self.pack_name(ref.pack), ref.offset, ref.length)
        except FileNotFoundError:
            raise RepoError(f"pack {ref.pack[:16]}… holding blob {blob_id[:16]}… is missing") from None

    # -- snapshots ------------------------------------------------------------------------------

    def write_snapshot(self, manifest: dict[str, Any]) -> str:
        """Encrypt, sign and store a manifest; returns the snapshot id."""
        if self.signer is None:
            raise RepoError("no signing key: snapshots are signed with the platform SM2 key")
        ct = self._enc(json.dumps(manifest, sort_keys=True).encode(), b"govctl-snapshot")
        doc = {"v": 1, "manifest": base64.b64encode(ct).decode(), "signature": base64.b64encode(self.signer.sign(ct)).decode(),
               "key_id": self.signer.public_key.key_id}  # fmt: skip
        data = json.dumps(doc).encode()
        sid = sm3_hex(data)
        self.backend.write_once(f"snapshots/{sid}", data)
        return sid

    def snapshot_ids(self) -> list[str]:
        """Every snapshot id."""
        return [n.rsplit("/", 1)[-1] for n in self.backend.list("snapshots/")]

    def load_snapshot(self, sid: str) -> dict[str, Any]:
        """Read, verify (name, SM2 signature) and decrypt one snapshot; ``id`` added."""
        matches = [s for s in self.snapshot_ids() if s.startswith(sid)] if len(sid) < 64 else [sid]
        if len(matches) != 1:
            raise RepoError(f"{'no' if not matches else 'more than one'} snapshot {sid!r}", hint="list them: govctl dr snapshots")
        sid = matches[0]
        data = self.backend.read(f"snapshots/{sid}")
        if sm3_hex(data) != sid:
            raise InvalidSignature(f"snapshot {sid[:16]}… does not match its name: it was altered")
        seen = _VERIFIED.get((self.config["id"], self.trusted.key_id, sid))
        if seen is not None:  # these exact bytes were verified before (the name is their SM3): skip the SM2 check
            return dict(seen)
        doc = json.loads(data)
        ct = base64.b64decode(doc["manifest"])
        try:
            self.trusted.verify(ct, base64.b64decode(doc["signature"]))
        except InvalidSignature:
            raise InvalidSignature(f"snapshot {sid[:16]}… is not signed by the platform key {self.trusted.key_id}: forged or re-signed") from None
        m = json.loads(self._dec(ct, b"govctl-snapshot", f"snapshot {sid[:16]}…"))
        m["id"] = sid
        if len(_VERIFIED) > 50_000:
            _VERIFIED.clear()
        _VERIFIED[(self.config["id"], self.trusted.key_id, sid)] = m
        return dict(m)

    def snapshots(self) -> list[dict[str, Any]]:
        """Every snapshot, oldest first (forged ones raise)."""
        return sorted((self.load_snapshot(s) for s in self.snapshot_ids()), key=lambda m: m["time"])

    def referenced(self, snap: dict[str, Any]) -> set[str]:
        """Every blob a snapshot needs: its trees and its files' chunks (only trees are decrypted)."""
        out, stack = set(), [snap["tree"]]
        while stack:
            tid = stack.pop()
            if tid in out:
                continue
            out.add(tid)
            for node in self.tree(tid)["nodes"]:
                if node["type"] == "dir":
                    stack.append(node["subtree"])
                elif node["type"] == "file":
                    out.update(node["content"])
        return out

    def tree(self, tree_id: str) -> dict[str, Any]:
        """A tree blob."""
        return json.loads(self.read_blob(tree_id))

    def walk(self, tree_id: str, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """(path, node) for every node below a tree, depth first."""
        for node in self.tree(tree_id)["nodes"]:
            path = f"{prefix}/{node['name']}" if prefix else node["name"]
            yield path, node
            if node["type"] == "dir":
                yield from self.walk(node["subtree"], path)

    def drop_snapshots(self, sids: list[str], *, command: str) -> None:
        """Remove snapshots superseded by newer ones (their data goes at the next prune)."""
        with self.lock(exclusive=True, command=command, wait_s=30):
            for sid in sids:
                self.backend.delete(f"snapshots/{sid}")

    def lock(self, *, exclusive: bool, command: str, wait_s: float = 0.0) -> Lock:
        """The repository lock."""
        return Lock(self.root, exclusive=exclusive, command=command, wait_s=wait_s)


PACK_WRITERS = 2


@dataclass
class Packer:
    """Collects sealed blobs into ~16 MiB packs; ``flush`` writes the pack, then its index entry."""

    repo: Repository
    target: int = PACK_TARGET
    pending: list[tuple[str, str, bytes, int]] = field(default_factory=list)
    size: int = 0
    seen: set[str] = field(default_factory=set)
    stored_bytes: int = 0
    new_blobs: int = 0

    def __post_init__(self) -> None:
        self.target = int(self.repo.config.get("pack_size", self.target))
        self._writers: list[threading.Thread] = []
        self._error: BaseException | None = None

    def add(self, blob_id: str, typ: str, sealed: bytes, raw_len: int) -> None:
        """Queue a blob (ignored if known)."""
        if blob_id in self.seen or blob_id in self.repo.index():
            return
        self.seen.add(blob_id)
        self.pending.append((blob_id, typ, sealed, raw_len))
        self.size += len(sealed)
        self.stored_bytes += len(sealed)
        self.new_blobs += 1
        if self.size >= self.target:
            self.flush()

    def known(self, blob_id: str) -> bool:
        """Already stored or queued."""
        return blob_id in self.seen or blob_id in self.repo.index()

    def flush(self) -> None:
        """Hand the pending blobs to the writer thread (pack, fsync, then index); the caller keeps going."""
        if not self.pending:
            return
        if not self._writers:
            import queue

            # two writers: a pack's SM3 name is one long serial hash, so two packs are named (and written) at once
            self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
            self._writers = [threading.Thread(target=self._write_loop, name=f"govctl-pack-writer-{i}", daemon=True) for i in range(PACK_WRITERS)]
            for w in self._writers:
                w.start()
        if self._error:
            raise self._error
        self._queue.put(self.pending)
        self.pending, self.size = [], 0

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                if self._error is None:
                    pid, entries = self.repo.write_pack(batch)
                    self.repo.write_index({pid: entries})
            except BaseException as exc:  # noqa: BLE001 - surfaced by close()
                self._error = exc

    def close(self) -> None:
        """Flush, and wait until every pack is durable and indexed (raises what the writer met)."""
        self.flush()
        for _ in self._writers:
            self._queue.put(None)
        for w in self._writers:
            w.join()
        self._writers = []
        if self._error:
            raise self._error
