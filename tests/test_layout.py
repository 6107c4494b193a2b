"""The README's layout tables match the tree: every folder and module named exists, and nothing in the tree is left out."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = {"var", ".venv", ".git", ".ci", "__pycache__", "govctl.egg-info", ".pytest_cache", ".ruff_cache", ".import_linter_cache"}


def _section(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {name}\n")
    nxt = text.find("\n## ", start + 4)
    return text[start: nxt if nxt != -1 else len(text)]


def test_top_level_folders_match() -> None:
    """The first table lists exactly the top-level folders of the clone."""
    layout = _section("Layout")
    first = layout.split("\n\n")[1]
    listed = {m.rstrip("/") for m in re.findall(r"^\| `([^`]+)/` \|", first, flags=re.M)}
    present = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in IGNORED and not p.name.startswith(".")}
    assert listed == present, f"README only: {sorted(listed - present)}; tree only: {sorted(present - listed)}"


def test_control_plane_parts_match() -> None:
    """The control_plane table names every module and package in it, each of which exists."""
    layout = _section("Layout")
    rows = [r for r in layout.splitlines() if r.startswith("| ") and r.count("|") == 4 and not r.startswith("| part") and "---" not in r]
    names: set[str] = set()
    for r in rows:
        cell = r.split("|")[2]
        names |= {n.rstrip("/") for n in re.findall(r"`([^`]+)`", cell)}
    cp = ROOT / "control_plane"
    present = {p.stem for p in cp.glob("*.py") if p.name != "__init__.py"} | {p.name for p in cp.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present -= {"migrations"}  # Alembic's, named in CONTRIBUTING
    named_here = {n for n in names if n != "dr" and "/" not in n and not n.endswith(".yaml")}
    missing_in_tree = {n.removesuffix(".py") for n in named_here} - present
    assert not missing_in_tree, f"README names what is not there: {sorted(missing_in_tree)}"
    left_out = present - {n.removesuffix(".py") for n in named_here}
    assert not left_out, f"control_plane has parts the README leaves out: {sorted(left_out)}"
    assert (ROOT / "dr").is_dir() and (ROOT / "CONTRIBUTING.md").is_file()


def test_every_domain_keeps_the_same_inner_shape() -> None:
    """Each domain the composition root lists declares its operations where CONTRIBUTING.md says (ops.py with OPERATIONS)."""
    from control_plane.wiring import DOMAINS

    for d in DOMAINS:
        folder = ROOT / Path(*d.split("."))
        ops = folder / "ops.py"
        assert ops.is_file(), f"{d} has no ops.py"
        assert "OPERATIONS = (" in ops.read_text(encoding="utf-8"), f"{d}/ops.py declares no OPERATIONS"


def test_every_error_class_says_its_http_status_and_exit_code() -> None:
    """No error of ours reaches the API as a bare 500: each package's error root sets both, and the status is a real one."""
    import importlib
    import pkgutil

    import control_plane
    import dr
    from control_plane.errors import GovctlError

    for pkg in (control_plane, dr):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if ".migrations" not in m.name:
                importlib.import_module(m.name)

    def subclasses(c: type) -> list[type]:
        return [s for d in c.__subclasses__() for s in (d, *subclasses(d))]

    ours = [c for c in subclasses(GovctlError) if c.__module__.startswith(("control_plane.", "dr."))]
    assert len(ours) >= 25
    bare = [f"{c.__module__}.{c.__name__}" for c in ours if c.http_status == 500 or not 400 <= c.http_status < 600 or c.exit_code == 0]
    assert not bare, f"errors without their own HTTP status or exit code: {bare}"
