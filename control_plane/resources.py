"""Where the data folders govctl ships with are: ``playbooks/``, ``soc_rules/``, ``monitors/``.

They are packages (each has an ``__init__.py`` and is package data in ``pyproject.toml``), so
they are found the same way from a clone, an editable install or a wheel; no path is built
from a source file's position.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Literal

Folder = Literal["playbooks", "soc_rules", "monitors", "infra"]


@cache
def folder(name: Folder) -> Path:
    """The installed directory of a data folder."""
    mod = importlib.import_module(name)
    return Path(mod.__file__ or "").resolve().parent


def project_root() -> Path:
    """The directory that holds the top-level packages (what a child Python needs on its path)."""
    return folder("infra").parent
