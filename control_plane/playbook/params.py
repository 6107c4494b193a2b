"""Typed playbook parameters (``playbooks/parameters.yaml``) and the extra-vars file Ansible reads.

Every value is parsed into its declared type before anything starts; the parsed values are
written to the run's ``env/extravars`` (0600) tagged ``!unsafe``, so Ansible never templates
them, and they never appear on a command line.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, RootModel

from control_plane.loader import LoadError, load_model

from control_plane.errors import GovctlError
from control_plane.resources import folder

PLAYBOOKS = folder("playbooks")
SCHEMA_FILE = PLAYBOOKS / "parameters.yaml"
MAX_LEN = 256
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/+-]{0,254}$")


class PlaybookParamError(GovctlError):
    """A playbook variable is unknown, missing or not of its declared type."""

    exit_code = 2

    http_status = 422


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"a string is needed, not {type(v).__name__}")
    if len(v) > MAX_LEN:
        raise ValueError(f"longer than {MAX_LEN} characters")
    if not v.isascii() or not v.isprintable():
        raise ValueError("only printable ASCII is allowed")
    return v


def _ipv4_cidr(v: Any) -> str:
    s = _text(v)
    if not re.fullmatch(r"[0-9./]+", s):
        raise ValueError("not an IPv4 address or prefix")
    try:
        return str(ipaddress.IPv4Network(s, strict=False)) if "/" in s else str(ipaddress.IPv4Address(s))
    except ValueError:
        raise ValueError("not an IPv4 address or prefix") from None


def _ip(v: Any) -> str:
    s = _text(v)
    if not re.fullmatch(r"[0-9A-Fa-f.:]+", s):
        raise ValueError("not an IP address")
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        raise ValueError("not an IP address") from None


def _posix_user(v: Any) -> str:
    s = _text(v)
    if not _POSIX_USER.fullmatch(s):
        raise ValueError("not a POSIX account name (lower-case letters, digits, _ and -, at most 32)")
    return s


def _host(v: Any) -> str:
    s = _text(v)
    try:
        return _ip(s)
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(s):
        raise ValueError("not a host name or address")
    return s


def _hosts(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [x for x in v.split(",") if x]
    if not isinstance(v, list) or not v or len(v) > 16:
        raise ValueError("a list of 1 to 16 host names or addresses is needed")
    return [_host(x) for x in v]


def _port(v: Any) -> int:
    if isinstance(v, str) and re.fullmatch(r"[0-9]{1,5}", v):
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise ValueError("not a port number (1-65535)")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("not a boolean (true or false)")


def _abs_path(v: Any) -> str:
    s = _text(v)
    if not _ABS_PATH.fullmatch(s) or ".." in s.split("/"):
        raise ValueError("not an absolute path of plain characters without '..'")
    return s


TYPES: dict[str, Callable[[Any], Any]] = {
    "ipv4_cidr": _ipv4_cidr, "ip": _ip, "posix_user": _posix_user, "hosts": _hosts,
    "port": _port, "bool": _bool, "abs_path": _abs_path,
}  # fmt: skip


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["ipv4_cidr", "ip", "posix_user", "hosts", "port", "bool", "abs_path"]  # noqa: F821
    required: bool = False


_Schema = RootModel[dict[str, Optional[dict[str, _Spec]]]]


@lru_cache(maxsize=4)
def load_schema(path: Path = SCHEMA_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """Every playbook's parameters, checked: file:line:field errors for a bad schema."""
    try:
        schema = load_model(path, _Schema, what="playbook parameters", hint="each variable needs a type and optionally required", empty={})
    except LoadError as exc:
        raise PlaybookParamError(exc.message, hint=exc.hint) from None
    return {pb: {n: spec.model_dump() for n, spec in (params or {}).items()} for pb, params in schema.root.items()}


def parse(playbook: str, values: dict[str, Any], *, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The playbook's variables parsed into their types, or PlaybookParamError naming the bad one."""
    schema = load_schema() if schema is None else schema
    if playbook not in schema:
        raise PlaybookParamError(f"playbook {playbook!r} declares no parameters", hint=f"add it to {SCHEMA_FILE.name}")
    spec = schema[playbook]
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise PlaybookParamError(f"{playbook} takes no variable {unknown[0]!r}",
                                 hint=f"it takes: {', '.join(spec) or 'no variables'}")  # fmt: skip
    out: dict[str, Any] = {}
    for name, s in spec.items():
        if name not in values:
            if s.get("required"):
                raise PlaybookParamError(f"{playbook} needs {name} ({s['type']})", hint=f"pass -e {name}=VALUE")
            continue
        try:
            out[name] = TYPES[s["type"]](values[name])
        except ValueError as exc:
            raise PlaybookParamError(f"{playbook}: {name}={str(values[name])[:60]!r} is refused: {exc}",
                                     hint=f"{name} must be of type {s['type']}") from None  # fmt: skip
    return out


class _Unsafe(str):
    """A string Ansible must not template."""


def _unsafe_repr(dumper: yaml.SafeDumper, data: _Unsafe) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", str(data), style='"')


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Unsafe, _unsafe_repr)


def _mark(v: Any) -> Any:
    if isinstance(v, str):
        return _Unsafe(v)
    if isinstance(v, list):
        return [_mark(x) for x in v]
    if isinstance(v, dict):
        return {k: _mark(x) for k, x in v.items()}
    return v


def write_extravars(path: Path, values: dict[str, Any]) -> None:
    """Write the run's extra-vars file: 0600 from creation, every string tagged !unsafe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(yaml.dump(_mark(values), Dumper=_Dumper, allow_unicode=False, default_flow_style=False))
