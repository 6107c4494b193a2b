"""Getting events into Elasticsearch without losing or doubling any.

* Document ids are the SM3 of the event's content, so sending an event twice overwrites it.
* While Elasticsearch is unreachable, events go to an on-disk spool (JSON lines, one file per
  batch, named in order) and are replayed, oldest first, before anything new is sent.
* An event Elasticsearch refuses (a mapping conflict) or a line no parser understands goes to the
  dead-letter index with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from control_plane import clock
from control_plane.crypto import sm3_hex
from control_plane.es import UNREACHABLE
from control_plane.soc.parsers import PARSERS, ParseError
from control_plane.soc.schema import DEADLETTER_INDEX, ensure_templates, events_index


@dataclass
class IngestResult:
    """What one ingestion did."""

    indexed: int = 0
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)
    # per program (syslog) or record type (auditd): lines parsed fully, partially, generically, or not at all
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, program: str, level: str) -> None:
        """One more line of ``program`` at ``level`` (full, partial, generic, unparsed)."""
        row = self.stats.setdefault(program, {"full": 0, "partial": 0, "generic": 0, "unparsed": 0})
        row[level] = row.get(level, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def doc_id(event: dict[str, Any]) -> str:
    """A content-derived id: the same event always gets the same id."""
    body = {k: v for k, v in event.items() if k != "event"} | {"event": {k: v for k, v in (event.get("event") or {}).items() if k != "ingested"}}
    return sm3_hex(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode())[:40]


def stamp(actions: list[dict[str, Any]]) -> None:
    """Set ``event.ingested`` to the moment of sending (a replayed spool too): detection windows follow arrival, not event time."""
    now = clock.es_iso(clock.now())
    for a in actions:
        src = a.get("_source")
        if isinstance(src, dict) and isinstance(src.get("event", {}), dict):  # a malformed ``event`` is dead-lettered as it came
            src["event"] = {**src.get("event", {}), "ingested": now}


def _program(ev: dict[str, Any], fmt: str) -> str:
    if fmt == "auditd":
        return f"auditd:{str((ev.get('event') or {}).get('dataset', '')).removeprefix('auditd.').upper()}"
    if fmt == "syslog":
        return str((ev.get("process") or {}).get("name") or "?")
    return fmt


class Ingestor:
    """Bulk indexing through the official client's helpers, with a spool and a dead-letter index."""

    def __init__(self, es: Elasticsearch, spool_dir: Path, *, chunk_size: int = 2000) -> None:
        self.es = es
        self.spool = Path(spool_dir)
        self.chunk_size = chunk_size
        self._templates = False

    def _actions(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for ev in events:
            yield {"_op_type": "index", "_index": events_index(ev.get("@timestamp")), "_id": doc_id(ev), "_source": ev}

    def _send(self, actions: list[dict[str, Any]], res: IngestResult) -> list[dict[str, Any]]:
        """Index ``actions``; return those not confirmed (Elasticsearch became unreachable)."""
        done = 0
        refused: list[dict[str, Any]] = []
        stamp(actions)
        try:
            if not self._templates:
                ensure_templates(self.es)
                self._templates = True
            for ok, item in helpers.streaming_bulk(self.es, actions, chunk_size=self.chunk_size, raise_on_error=False,
                                                   raise_on_exception=True, max_retries=2, initial_backoff=0.5):  # fmt: skip
                done += 1
                if ok:
                    res.indexed += 1
                else:
                    info = item.get("index", item)
                    refused.append({"id": info.get("_id"), "reason": json.dumps(info.get("error"), default=str)[:2000]})
        except UNREACHABLE as exc:
            res.errors.append(f"Elasticsearch unreachable ({type(exc).__name__}); events kept in the spool")
            return actions[done:]
        if refused:
            by_id = {a["_id"]: a for a in actions}
            self._dead_letter([{"reason": r["reason"], "source": "index", "original": json.dumps(by_id[r["id"]]["_source"], default=str)}
                               for r in refused if r["id"] in by_id], res)  # fmt: skip
        return []

    def _dead_letter(self, rows: list[dict[str, Any]], res: IngestResult) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        acts = [{"_index": DEADLETTER_INDEX, "_id": sm3_hex((r["original"] + r["reason"]).encode())[:40],
                 "_source": {"@timestamp": now, **r}} for r in rows]  # fmt: skip
        try:
            helpers.bulk(self.es, acts, raise_on_error=False)
        except UNREACHABLE:
            self._spool_write([{"__deadletter__": r} for r in rows])
        res.dead_lettered += len(rows)

    def _spool_files(self) -> list[Path]:
        return sorted(self.spool.glob("*.jsonl")) if self.spool.is_dir() else []

    def _spool_write(self, items: list[dict[str, Any]]) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        name = self.spool / f"{time.time_ns():020d}-{os.getpid()}.jsonl"
        tmp = name.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps(it, default=str, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, name)

    def pending(self) -> int:
        """Events waiting in the spool."""
        return sum(1 for f in self._spool_files() for _ in open(f, encoding="utf-8"))

    def replay(self, res: IngestResult | None = None) -> IngestResult:
        """Send the spool, oldest file first; stop at the first file Elasticsearch cannot take."""
        res = res or IngestResult()
        for f in self._spool_files():
            items = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            dead = [i["__deadletter__"] for i in items if "__deadletter__" in i]
            actions = [i for i in items if "__deadletter__" not in i]
            before = res.indexed
            left = self._send(actions, res) if actions else []
            if left:
                res.indexed = before  # counted again when the file is replayed whole
                return res
            if dead:
                self._dead_letter(dead, res)
            res.replayed += len(actions)
            f.unlink()
        return res

    def ingest(self, events: Iterable[dict[str, Any]], res: IngestResult | None = None) -> IngestResult:
        """Index events (after replaying the spool); whatever cannot be sent now is spooled in order."""
        from control_plane import metrics

        res = res or IngestResult()
        before = (res.indexed, res.spooled, res.dead_lettered)
        self.replay(res)
        batch: list[dict[str, Any]] = []
        for ev in events:
            batch.extend(self._actions([ev]))
            if len(batch) >= self.chunk_size * 5:
                self._flush(batch, res)
                batch = []
        if batch:
            self._flush(batch, res)
        for outcome, b, a in zip(("indexed", "spooled", "dead_lettered"), before, (res.indexed, res.spooled, res.dead_lettered)):
            if a > b:
                metrics.SOC_EVENTS_INGESTED.labels(outcome=outcome).inc(a - b)
        return res

    def _flush(self, batch: list[dict[str, Any]], res: IngestResult) -> None:
        if self._spool_files():  # never overtake older spooled events
            self._spool_write(batch)
            res.spooled += len(batch)
            return
        left = self._send(batch, res)
        if left:
            self._spool_write(left)
            res.spooled += len(left)

    def ingest_documents(self, docs: Iterable[Any], *, source: str) -> IngestResult:
        """Index ready ECS documents (from the API); anything that is not an object with @timestamp is dead-lettered."""
        items = list(docs)
        good = [d for d in items if isinstance(d, dict) and d.get("@timestamp")]
        res = self.ingest(good)
        bad = [{"reason": f"{source}: an event must be an object with @timestamp", "source": source,
                "original": json.dumps(d, default=str, ensure_ascii=False)[:10000]}
               for d in items if not (isinstance(d, dict) and d.get("@timestamp"))]  # fmt: skip
        if bad:
            self._dead_letter(bad, res)
        return res

    def ingest_lines(self, lines: Iterable[str], fmt: str, *, source: str = "file") -> IngestResult:
        """Parse lines of ``fmt`` (syslog, auditd, json); unparseable ones go to the dead-letter index."""
        if fmt not in PARSERS:
            raise ParseError(f"unknown format {fmt!r}", hint=f"formats: {', '.join(PARSERS)}")
        parse = PARSERS[fmt]
        res = IngestResult()
        bad: list[dict[str, Any]] = []

        def parsed() -> Iterator[dict[str, Any]]:
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    ev = parse(line)
                except ParseError as exc:
                    res.count("(not " + fmt + ")", "unparsed")
                    bad.append({"reason": f"{source}:{n}: {exc.message}", "source": source, "original": line.rstrip("\n")})
                    continue
                res.count(_program(ev, fmt), str((ev.get("govctl") or {}).get("parse") or "full"))
                yield ev

        self.ingest(parsed(), res)
        if bad:
            try:
                self._dead_letter(bad, res)
            except Exception:  # noqa: BLE001 - the spool keeps them
                self._spool_write([{"__deadletter__": b} for b in bad])
        return res
