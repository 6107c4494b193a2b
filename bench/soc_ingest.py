"""Events/s through our ingestion path vs the raw client's streaming_bulk of the same documents.

Both write the same parsed documents (content-derived ids, daily index from @timestamp) to a
fresh index on the same Elasticsearch in the same run; ours adds the id hashing, the spool check
and the dead-letter handling. Parsing is timed separately. Elasticsearch is started here if it
is not running (and stopped again).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import helpers  # noqa: E402

from control_plane.config import load  # noqa: E402
from control_plane.es import client_for  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.soc.ingest import Ingestor, doc_id  # noqa: E402
from control_plane.soc.parsers import parse_syslog  # noqa: E402
from control_plane.soc.schema import ensure_templates  # noqa: E402

N = int(os.environ.get("BENCH_EVENTS", "60000"))


def lines(day: int) -> list[str]:
    """N realistic sshd/sudo lines on one day of January 2001 (so each run writes a fresh index)."""
    out = []
    for i in range(N):
        t = f"Jan {day:2d} {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        if i % 3:
            out.append(f"{t} prim-app-{i % 7} sshd[{1000 + i}]: Failed password for ops{i % 50} from 203.0.{i % 250}.{i % 200} port {20000 + i % 40000} ssh2")
        else:
            out.append(f"{t} prim-data-{i % 5} sudo:      ops{i % 9} : TTY=pts/{i % 4} ; PWD=/root ; USER=root ; COMMAND=/usr/bin/systemctl status svc{i % 30}")
    return out


def main() -> None:
    """Measure and print; end with the RESULT line."""
    settings = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(settings)
    started = [s.name for s in sup.status(["elasticsearch"]) if s.health != "healthy"]
    sup.up(["elasticsearch"])
    try:
        es = client_for(settings, timeout=60)
        ensure_templates(es)
        t0 = time.perf_counter()
        parsed = [parse_syslog(x, year=2001) for x in lines(2)]
        parse_rate = N / (time.perf_counter() - t0)
        # warm the JVM and the client first, then alternate raw and ours, best of two each
        for ok, _ in helpers.streaming_bulk(es, ({"_index": "soc-events-2001.01.01", "_source": d} for d in parsed[:10000]), chunk_size=2000):
            pass
        raw_rate = ours_rate = 0.0
        for day in (3, 5):
            docs_raw = [parse_syslog(x, year=2001) for x in lines(day)]
            docs_ours = [parse_syslog(x, year=2001) for x in lines(day + 1)]
            t0 = time.perf_counter()
            for ok, _ in helpers.streaming_bulk(es, ({"_index": f"soc-events-2001.01.{day:02d}", "_id": doc_id(d), "_source": d} for d in docs_raw),
                                                chunk_size=2000, raise_on_error=True):  # fmt: skip
                pass
            raw_rate = max(raw_rate, N / (time.perf_counter() - t0))
            ing = Ingestor(es, Path(tempfile.mkdtemp(prefix="govctl-spool-")))
            t0 = time.perf_counter()
            res = ing.ingest(docs_ours)
            ours_rate = max(ours_rate, N / (time.perf_counter() - t0))
            assert res.indexed == N and not res.spooled, res
        for day in range(1, 7):  # the node refuses wildcard deletes (action.destructive_requires_name)
            es.indices.delete(index=f"soc-events-2001.01.{day:02d}", ignore_unavailable=True)
    finally:
        if started:
            sup.down(started)
    print(f"raw streaming_bulk  {raw_rate:9,.0f} events/s")
    print(f"our ingestion path  {ours_rate:9,.0f} events/s  (ratio {ours_rate / raw_rate:.2f})")
    print(f"syslog parsing      {parse_rate:9,.0f} lines/s")
    print(f"RESULT ingest_events_per_s={ours_rate:.0f} raw_streaming_bulk_events_per_s={raw_rate:.0f} "
          f"ratio_vs_raw_streaming_bulk={ours_rate / raw_rate:.2f} parse_lines_per_s={parse_rate:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
