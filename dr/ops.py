"""Backups, restores, retention and drills, as gate operations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from control_plane.operation import STACK_T, TARGETS, AbsPath, Call, Operation, Params, RelPath
from dr import drill
from dr.files import restore
from dr.pg import backup_pool_target, restore_pg
from dr.repo import RepoError
from dr.retention import forget, prune
from dr.service import backup_source, open_repo, source

SOURCE_T = r"^[a-z][a-z0-9_-]{0,63}(\.[a-z][a-z0-9-]{0,30})?$"  # dr.sources' names, and a registered system's data as <system>.<data>


class Restore(Params):
    kind: Literal["files", "postgres"]
    target: AbsPath
    include: list[RelPath] = Field(default_factory=list, max_length=64)
    to: Annotated[str, StringConstraints(pattern=r"^(latest|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))$")] = "latest"
    host: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")] | None = None  # postgres: bring it up on this backup-pool host


class Credential(Params):
    staged: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


def _validate_credential(call: Call) -> None:
    src = source(call.ctx, call.target)
    if src.type != "postgres" or src.host is None:
        raise RepoError(f"source {call.target} is not PostgreSQL on a pool host; only those have a credential to store")


def _credential(call: Call) -> dict[str, Any]:
    from dr.access import install_credential

    return install_credential(call.ctx, call.target, call.params["staged"], source(call.ctx, call.target).credential)


class DryRun(Params):
    dry_run: bool = False


class Drill(Params):
    cleanup: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    canary_s: float = Field(default=5.0, gt=0, le=600)
    system: Annotated[str, StringConstraints(pattern=r"^[\w.-]{1,64}$")] | None = None  # a registered system's code or name (人口库)


def _validate_drill(call: Call) -> None:
    if call.params.get("system"):
        drill.system_for(call.ctx, call.params["system"], call.target)


def _validate_backup(call: Call) -> None:
    source(call.ctx, call.target)


def _validate_restore(call: Call) -> None:
    if call.params.get("host"):
        if call.params.get("kind") != "postgres":
            raise RepoError("--host is for PostgreSQL restores (a cluster brought up on a backup-pool host)", hint="files restore into --target")
        backup_pool_target(call.ctx, call.target, call.params["host"])
    p = Path(call.params["target"])
    if p.is_symlink():
        raise RepoError(f"restore target {p} is a symbolic link", hint="give a new directory")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise RepoError(f"restore target {p} is not empty", hint="give an empty or new directory; restores never write into existing trees")


def _restore(call: Call) -> dict[str, Any]:
    repo = open_repo(call.ctx, create=False)
    p = call.params
    if p.get("kind") == "postgres":
        run_as = backup_pool_target(call.ctx, call.target, p["host"]) if p.get("host") else None
        return restore_pg(call.ctx, repo, call.target, Path(p["target"]), to=p.get("to") or "latest", run_as=run_as)
    return restore(repo, call.target, Path(p["target"]), include=p.get("include") or None)


def _forget(call: Call) -> dict[str, Any]:
    src = None if call.target in ("", "*") else call.target
    return forget(open_repo(call.ctx, create=False), call.ctx.settings.dr.retention, source=src, dry_run=bool(call.params.get("dry_run")))


def _validate_destroy(call: Call) -> None:
    from dr.destroy import plan

    plan(call.ctx, call.target)


def _destroy(call: Call) -> dict[str, Any]:
    from dr.destroy import destroy

    return destroy(call.ctx, call.target, by=call.by, approvers=call.approvers, op_id=call.op_id)


def _drill(call: Call) -> dict[str, Any]:
    if call.params.get("cleanup"):
        return drill.cleanup(call.ctx, call.params["cleanup"], by=call.by)
    return drill.run(call.ctx, stack=call.target, canary_s=float(call.params.get("canary_s", 5.0)), by=call.by, system=call.params.get("system"),
                     approvers=call.approvers)  # fmt: skip


OPERATIONS = (
    Operation("backup.run", SOURCE_T, "a backup source from dr.sources", lambda c: backup_source(c.ctx, c.target), validate=_validate_backup,
              description="back up one source now"),  # fmt: skip
    Operation("dr.restore", r"^[A-Za-z0-9_.-]{1,64}$", "a snapshot id or a source name", _restore, Restore, validate=_validate_restore,
              description="restore a snapshot into a new, empty directory"),  # fmt: skip
    Operation("backup.delete", r"^(\*|[a-z][a-z0-9_-]{0,63}(\.[a-z][a-z0-9-]{0,30})?)$", "a source name, or * for every source", _forget, DryRun,
              description="forget snapshots past the retention policy"),  # fmt: skip
    Operation("backup.prune", r"^repository$", "repository", lambda c: prune(open_repo(c.ctx, create=False), dry_run=bool(c.params.get("dry_run"))),
              DryRun, description="delete data no snapshot references"),  # fmt: skip
    Operation("dr.credential", SOURCE_T, "a PostgreSQL source on a pool host (<system>.<data>)", _credential, Credential, validate=_validate_credential,
              description="install the password of a department cluster's replication role (typed on standard input, staged 0600; never a parameter)"),  # fmt: skip
    Operation("dr.destroy", r"^[\w.-]{1,64}$", "a registered system (code or name)", _destroy, validate=_validate_destroy,
              description="数据安全销毁: destroy a system's backups in every repository, with a signed destruction record (its stack must be gone)"),  # fmt: skip
    Operation("dr.drill", STACK_T, TARGETS[STACK_T], _drill, Drill, validate=_validate_drill,
              description="a failover drill on a stack, judged against a registered system's RPO/RTO targets when one is named (or clean one up)"),  # fmt: skip
)
