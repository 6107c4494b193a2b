"""Runs one Pulumi program for the language host (``infra.langhost``): its settings and configuration arrive on standard input.

Exit status 0: done; 32: the program failed and the engine was told (a resource or policy error,
already shown); anything else: it crashed (the traceback is on standard error).
"""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
import traceback
from pathlib import Path

from pulumi import log
from pulumi.errors import RunError
from pulumi.runtime import reset_options, run_in_stack, set_all_config


def main() -> int:
    """Read the job, configure the runtime, run the program's entry point inside the stack."""
    job = json.loads(sys.stdin.buffer.read())
    reset_options(project=job["project"], monitor_address=job["monitor"], engine_address=job["engine"], stack=job["stack"],
                  parallel=job["parallel"], preview=job["dry_run"], organization=job["organization"])  # fmt: skip
    if job["config"]:
        set_all_config(job["config"], job["secret_keys"] or None)
    program = Path(job["program"])
    entry = program if job["entry"] in ("", ".") else program / job["entry"]
    sys.path.insert(0, job["root"])

    def run() -> None:
        runpy.run_path(str(entry), run_name="__main__")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run_in_stack(run))
    except RunError as exc:
        log.error(str(exc))
        return 32
    except Exception as exc:  # noqa: BLE001 - shown through the engine, then the status says it failed
        msg = getattr(exc, "message", None) or str(exc)
        log.error(f"{type(exc).__name__}: {msg}")
        traceback.print_exc()
        return 32
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
