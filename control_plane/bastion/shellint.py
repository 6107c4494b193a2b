"""The shell integration that lets the bastion judge a line before the host runs it.

The upstream shell is bash started with a small rc instead of the account's own ``~/.bashrc``:

* Enter (``C-m``, ``C-j``) no longer accepts the line: it prints the marker ``OSC 697;E``. Only
  readline at a prompt does this; a running program (``cat``, ``read``, an editor) gets Enter as
  usual, so the bastion learns from the host itself whether a line is about to be run.
* On ``E`` the bastion sends a probe key and a fresh 16-character nonce; the shell answers
  ``OSC 697;L;<nonce>;<base64 of READLINE_LINE>``: the exact text bash would run, after every
  edit, history recall, completion and paste. Output that merely looks like an answer (printed by
  a background job) lacks the nonce and is ignored.
* Accepting the line is a key sequence that ends in a per-session secret; the bastion sends it
  only after a decision, holds the person's input from Enter until then (so the buffer cannot
  change in between), and removes the probe and accept prefixes from everything the person
  types. A line that needs more (an open quote, a loop, a here-document) gets a literal newline
  inserted instead, so the next answer holds the whole text.
* Every other way readline has to run a line is unbound (``operate-and-get-next``,
  ``edit-and-execute-command``, re-reading an inputrc, switching to vi mode), Enter is bound the
  same way in the vi keymaps, the functions are read-only, and any line touching the markers,
  bindings, inputrc or prompt is blocked by the decision itself (``decide.OWN_NAMES``).

Residual risk, stated: a process on the host that injects terminal input (``TIOCSTI``, root only
on current kernels) and knows the session's secret can accept a line itself; the recording still
shows it.
"""

from __future__ import annotations

import base64
import re
import secrets

PROBE_KEY = b"\x18\x1d"  # C-x C-]
ACCEPT_PREFIX = b"\x18\x07"  # C-x C-g, then the session's secret
NEWLINE_IN_BUFFER = b"\x16\x0a"  # quoted-insert C-j: a newline inside the line being edited
DISCARD = b"\x03"  # readline drops the line on SIGINT
_MARK = re.compile(rb"\x1b\]697;(E|L;([0-9a-f]{16});([A-Za-z0-9+/=]*))\x07")
_START = b"\x1b]697;"

# The account's own ~/.bashrc and ~/.inputrc are not read: an alias or function defined there (``ls() { ... }``),
# a ``trap ... DEBUG`` or an inputrc line binding another key to accept-line would run code the bastion never judged.
RC = r"""export INPUTRC=/dev/null
unalias -a
for __f in $(compgen -A function); do unset -f "$__f"; done
trap - DEBUG RETURN ERR EXIT
PS1='\u@\h:\w\$ '
set -o emacs
export LESSSECURE=1 SYSTEMD_PAGERSECURE=1
readonly LESSSECURE SYSTEMD_PAGERSECURE
__govctl_enter() { printf '\033]697;E\007'; }
__govctl_probe() { local n; IFS= read -rs -t 5 -n 16 n; printf '\033]697;L;%s;%s\007' "$n" "$(printf %s "$READLINE_LINE" | base64 -w0)"; }
readonly -f __govctl_enter __govctl_probe
bind -x '"\C-x\C-]": __govctl_probe'
for __m in emacs vi-insert vi-command; do bind -m "$__m" -x '"\C-m": __govctl_enter'; bind -m "$__m" -x '"\C-j": __govctl_enter'; done
unset __m __f
bind -r '\C-o'; bind -r '\C-x\C-e'; bind -r '\C-x\C-r'; bind -r '\e\C-j'; bind -m vi-command -r 'v'
bind '"\C-x\C-g@SECRET@": accept-line'
exec 3<&-
"""


def new_secret() -> str:
    """The per-session part of the accept sequence (letters only: safe inside a readline binding)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(20))


def shell_command(secret: str) -> str:
    """The command the bastion runs on the host for an interactive session: bash with the rc above on fd 3."""
    if not re.fullmatch(r"[A-Za-z]{20}", secret):
        raise ValueError("the session secret is 20 letters")
    return "exec bash --noprofile --rcfile /dev/fd/3 -i 3<<'__GOVCTL_RC__'\n" + RC.replace("@SECRET@", secret) + "__GOVCTL_RC__\n"


def accept(secret: str) -> bytes:
    """The key sequence that runs the line."""
    return ACCEPT_PREFIX + secret.encode()


def new_nonce() -> str:
    """A probe's nonce."""
    return secrets.token_hex(8)


class InputFilter:
    """Removes the probe and accept prefixes from what a person types (across reads)."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """The bytes that may reach the host."""
        data = self._carry + data
        self._carry = b""
        if data.endswith(b"\x18"):
            self._carry, data = b"\x18", data[:-1]
        while PROBE_KEY in data or ACCEPT_PREFIX in data:
            data = data.replace(PROBE_KEY, b"").replace(ACCEPT_PREFIX, b"")
        return data


class OutputScrubber:
    """Takes the shell's markers out of what the host prints (across reads); returns the rest and the markers."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[str, str, str]]]:
        """(bytes for the person's terminal, [("E", "", "") | ("L", nonce, line)])."""
        data = self._carry + data
        self._carry = b""
        marks: list[tuple[str, str, str]] = []
        out = bytearray()
        pos = 0
        for m in _MARK.finditer(data):
            out += data[pos:m.start()]
            if m.group(1) == b"E":
                marks.append(("E", "", ""))
            else:
                try:
                    line = base64.b64decode(m.group(3), validate=True).decode("utf-8", "replace")
                except ValueError:
                    line = "\x00"  # an answer that does not decode is never a clean line
                marks.append(("L", m.group(2).decode(), line))
            pos = m.end()
        rest = data[pos:]
        # keep a possible marker start for the next read (a marker split across two reads)
        cut = rest.rfind(b"\x1b")
        if cut >= 0 and (_START.startswith(rest[cut:cut + len(_START)]) or rest[cut:].startswith(_START)) and b"\x07" not in rest[cut:] and len(rest) - cut < 65536:
            self._carry = rest[cut:]
            rest = rest[:cut]
        out += rest
        return bytes(out), marks
