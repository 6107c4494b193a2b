"""The one way a YAML data file becomes a typed model: every error as ``file:line:field: message``.

The policy, the configuration, the department registry, the playbooks' parameters and the SOC
rules' own fields all load through ``load_model`` (or ``validate`` for text already read), so a
bad file is refused the same way everywhere, with every offending field listed at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from control_plane.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class LoadError(ConfigError):
    """A data file that cannot be read, is not YAML, or does not fit its model."""

    def __init__(self, message: str, *, hint: str | None = None, issues: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.issues = issues or [message]


def _lines(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Each key path in a composed YAML tree and the 1-based line it starts on."""
    out: dict[tuple[Any, ...], int] = {}
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            out.update({p: ln for p, ln in _lines(v, (*path, key)).items() if p != (*path, key)})
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_lines(v, (*path, i)))
    return out


def _line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    loc = tuple(x for x in loc if not (isinstance(x, str) and x.startswith(("function-", "union["))))
    for n in range(len(loc), -1, -1):  # the deepest key that exists in the file (a missing field: its parent)
        key = tuple(str(x) if not isinstance(x, int) else x for x in loc[:n])
        if key in lines:
            return lines[key]
    return None


def parse_text(text: str, where: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The data and each key's line, or a LoadError with the line and column of the syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        raise LoadError(f"{at}: not valid YAML ({getattr(exc, 'problem', None) or exc})", hint="fix the syntax") from None
    return data, _lines(node)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def issues_of(exc: ValidationError, where: str, lines: dict[tuple[Any, ...], int], *, prefix: tuple[Any, ...] = (),
              model: type[BaseModel] | None = None) -> list[str]:  # fmt: skip
    """One ``file:line:field: message`` per validation error; an unknown key lists the keys allowed there."""
    out = []
    for e in exc.errors():
        loc = (*prefix, *e["loc"])
        field = ".".join(str(x) for x in loc) or "(top level)"
        line = _line_of(lines, loc)
        if e["type"] == "extra_forbidden" and model is not None:
            parent = _model_at(model, e["loc"][:-1])
            if parent is not None:
                out.append(f"{where}:{line or 1}:{field}: unknown key; allowed here: {', '.join(sorted(parent.model_fields))}")
                continue
        got = f" (got {e['input']!r})" if e["type"] not in ("value_error", "missing", "assertion_error") and not isinstance(e["input"], dict) else ""
        out.append(f"{where}:{line or 1}:{field}: {e['msg']}{got}")
    return out


def validate(model: type[M], data: Any, where: str, lines: dict[tuple[Any, ...], int] | None = None, *,
             hint: str | None = None, context: dict[str, Any] | None = None) -> M:  # fmt: skip
    """``data`` as ``model``, or one LoadError listing every offending field with its line."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        issues = issues_of(exc, where, lines or {}, model=model)
        raise LoadError("; ".join(issues), hint=hint, issues=issues) from None


def read(path: Path, *, what: str, hint: str | None = None) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """A YAML file's data and line map; an unreadable file is a LoadError naming ``what`` it is."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LoadError(f"{what} {path}: cannot read ({exc.strerror})", hint=hint) from None
    return parse_text(text, str(path))


def load_model(path: Path, model: type[M], *, what: str, hint: str | None = None, empty: Any = None) -> M:
    """Read ``path`` and validate it as ``model`` (an empty file is ``empty``)."""
    data, lines = read(path, what=what, hint=hint)
    return validate(model, empty if data is None else data, str(path), lines, hint=hint)
