"""The shell integration's rc, run by a real bash in a home whose dotfiles try to run code the bastion never sees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from control_plane.bastion import shellint

HOSTILE_BASHRC = """alias ls='touch "$HOME/alias-ran"'
cd() { touch "$HOME/function-ran"; }
readonly -f cd 2>/dev/null
trap 'touch "$HOME/debug-trap-ran"' DEBUG
"""


def test_dotfiles_of_the_account_are_not_read(tmp_path: Path) -> None:
    """An alias, a (readonly) function and a DEBUG trap in ~/.bashrc, and an inputrc binding a key to accept-line: none is in force."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(HOSTILE_BASHRC)
    (home / ".inputrc").write_text('"\\C-t": accept-line\n')
    rc = tmp_path / "rc"
    rc.write_text(shellint.RC.replace("@SECRET@", shellint.new_secret()).replace("exec 3<&-\n", ""))
    # the rc sourced as the session's bash would read it (no terminal here, so readline's bindings only warn)
    script = f'. {rc} 2>/dev/null; type -t ls; type -t cd; trap -p DEBUG; echo "inputrc=$INPUTRC"; ls >/dev/null; cd /'
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env={"HOME": str(home), "PATH": os.environ["PATH"], "TERM": "dumb"}, cwd=home)  # fmt: skip
    lines = done.stdout.split()
    assert lines[:3] == ["file", "builtin", "inputrc=/dev/null"], done.stdout + done.stderr
    assert not any((home / f).exists() for f in ("alias-ran", "function-ran", "debug-trap-ran")), sorted(os.listdir(home))


def test_the_secret_is_letters_only() -> None:
    """The per-session secret goes into a readline binding: anything but letters is refused before a shell sees it."""
    import pytest

    with pytest.raises(ValueError):
        shellint.shell_command("abc'; rm -rf / #xxxxxxxx")
    assert shellint.shell_command(shellint.new_secret()).startswith("exec bash --noprofile --rcfile /dev/fd/3 -i")
