"""Every backup source: ``dr.sources`` in govctl.yaml and each registered system's data (``<system>.<data>``), and whether there is anything to back up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dr.repo import RepoError

if TYPE_CHECKING:
    from control_plane.context import Context


def sources(rt: Context) -> dict[str, Any]:
    """Every backup source: dr.sources in govctl.yaml, then each registered system's data as ``<system>.<data>``."""
    from control_plane.config import DrSource
    from control_plane.report.registry import load_registry

    out: dict[str, Any] = dict(rt.settings.dr.sources)
    s = rt.settings
    reg = load_registry(s.path(s.report.registry_file) if s.report.registry_file else None)
    for d in reg.departments:
        for sysm in d.systems:
            for x in sysm.data:
                name = f"{sysm.code}.{x.name}"
                if name in out:
                    raise RepoError(f"backup source {name!r} is both in dr.sources and in the registry", hint="rename one of them")
                out[name] = DrSource(type=x.type, host=x.host, port=x.port, path=x.path, realtime=x.realtime, every_s=x.every_s,
                                     rpo_s=int(sysm.rpo_s) if sysm.rpo_s else 7200, tls_ca=s.path(x.tls_ca) if x.tls_ca else None,
                                     credential=s.path(x.credential) if x.credential else None, role=x.role, account=x.account, system=sysm.code)  # fmt: skip
    return out


def deployed(rt: Context, src: Any) -> bool:
    """A source on a pool host has something to back up only while that host is deployed; a local one always does."""
    if src.host is None:
        return True
    from control_plane.bastion import store

    return src.host in store.assets(rt)


def source(rt: Context, name: str) -> Any:
    """A configured source, or a clear error."""
    every = sources(rt)
    src = every.get(name)
    if src is None:
        raise RepoError(f"no backup source {name!r}", hint=f"configured: {', '.join(every) or 'none'} (dr.sources in govctl.yaml, systems' data in the registry)")
    return src
