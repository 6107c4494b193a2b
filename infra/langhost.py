"""The Pulumi engine's Python language host for this project, so the standard CLI works at the repository root.

``pulumi preview``, ``pulumi up`` and ``pulumi up --policy-pack infra/policy`` start a plugin named
``pulumi-language-python``; the Go one is not served by the module proxy. ``make`` writes that
plugin into the virtualenv as a two-line script that runs this module. It serves the
``LanguageRuntime`` gRPC service (the stubs ship in the ``pulumi`` wheel) on a loopback port it
prints for the engine, and:

* ``Run`` starts the program in a child process (``infra.langexec``), handing it the run's
  settings and configuration on standard input (configuration may hold secrets: never on a
  command line), with the child's output going where the engine shows it;
* ``RunPlugin`` runs a Python policy pack (``python -u <pack directory>``) and streams its output
  back, which is how the engine runs ``--policy-pack`` analyzers;
* the rest (plugins, dependencies, about) answer from this virtualenv: the program needs no
  plugin but the dynamic-provider host that ``make`` installs beside the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

ROOT = Path(__file__).resolve().parents[1]


def _env(root: str | None = None) -> dict[str, str]:
    """The child's environment: this virtualenv first on PATH, the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root or str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Host(language_pb2_grpc.LanguageRuntimeServicer):
    """LanguageRuntime for Python programs and policy packs, run with this interpreter."""

    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address
        self.root: str | None = None

    def Handshake(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method names
        self.engine_address = request.engine_address or self.engine_address
        self.root = request.root_directory or None
        return language_pb2.LanguageHandshakeResponse()

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.GetRequiredPackagesResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        from importlib.metadata import version

        return plugin_pb2.PluginInfo(version=version("pulumi"))

    def About(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.AboutResponse(executable=sys.executable, version=sys.version.split()[0])

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:  # noqa: N802
        return language_pb2.GetProgramDependenciesResponse()

    def InstallDependencies(self, request: Any, context: Any) -> Any:  # noqa: N802
        return iter(())  # `make` installs them; nothing to do per run

    def Run(self, request: Any, context: Any) -> Any:  # noqa: N802
        root = request.info.root_directory or self.root or request.pwd or str(ROOT)
        program = request.info.program_directory or request.program or root
        job = {
            "project": request.project, "stack": request.stack, "organization": request.organization or "organization",
            "monitor": request.monitor_address, "engine": self.engine_address, "dry_run": request.dryRun,
            "parallel": request.parallel, "config": dict(request.config), "secret_keys": list(request.configSecretKeys),
            "program": program, "entry": request.info.entry_point or ".", "root": root,
        }  # fmt: skip
        p = subprocess.run([sys.executable, "-u", "-m", "infra.langexec"], input=json.dumps(job).encode(), cwd=request.pwd or root, env=_env(root),
                           check=False)  # fmt: skip
        if p.returncode == 0:
            return language_pb2.RunResponse()
        # 32: the program reported its error through the engine already (a policy violation, a failed resource)
        return language_pb2.RunResponse(error="" if p.returncode == 32 else f"the program exited with status {p.returncode}", bail=p.returncode == 32)

    def RunPlugin(self, request: Any, context: Any) -> Any:  # noqa: N802
        """A policy pack (or any Python plugin): ``python -u <directory> <args>``, its output streamed back as it comes."""
        root = request.info.root_directory or self.root or str(ROOT)
        program = request.info.program_directory or request.program
        env = _env(str(ROOT))
        for kv in request.env:
            k, _, v = kv.partition("=")
            env[k] = v
        proc = subprocess.Popen([sys.executable, "-u", program, *request.args], cwd=request.pwd or root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        out: list[Any] = []
        lock = threading.Condition()

        def pump(stream: Any, field: str) -> None:
            for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
                with lock:
                    out.append(language_pb2.RunPluginResponse(**{field: chunk}))
                    lock.notify()
            with lock:
                out.append(None)
                lock.notify()

        threads = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True), threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
        for t in threads:
            t.start()
        ended = 0
        try:
            while ended < 2:
                with lock:
                    while not out:
                        if not context.is_active():
                            proc.kill()
                            return
                        lock.wait(0.5)
                    item = out.pop(0)
                if item is None:
                    ended += 1
                else:
                    yield item
            yield language_pb2.RunPluginResponse(exitcode=proc.wait())
        finally:
            if proc.poll() is None:
                proc.kill()


def main(argv: list[str]) -> None:
    """Serve on a loopback port and print it (the plugin protocol); the engine's address is the last plain argument."""
    plain = [a for a in argv if not a.startswith("-")]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(Host(plain[-1] if plain else ""), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # the engine ends its plugins with a signal: stop quietly, not with a traceback
        signal.signal(sig, lambda *_: done.set())
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    done.wait()
    server.stop(grace=2).wait()


if __name__ == "__main__":
    main(sys.argv[1:])
