"""Every command a shell line or script would run: lists, pipelines, subshells, substitutions, ``sh -c``.

Parsing is bashlex's; we walk its tree and recurse into the strings given to ``sh -c``,
``bash -c``, ``eval`` and friends, so ``ls; rm -rf /`` or ``echo $(mkfs /dev/sda)`` yield the
dangerous command on its own. Text bashlex cannot parse is treated as one command (never as safe).
"""

from __future__ import annotations

import shlex

import bashlex

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "busybox"}
MAX_DEPTH = 8


def _words(node: bashlex.ast.node, text: str) -> list[str]:
    return [p.word for p in getattr(node, "parts", []) if getattr(p, "kind", "") == "word"]


class _Collector(bashlex.ast.nodevisitor):
    def __init__(self, text: str, out: list[list[str]], depth: int) -> None:
        self.text, self.out, self.depth = text, out, depth

    def visitcommand(self, node: bashlex.ast.node, parts: list) -> None:  # noqa: N802 - bashlex's API
        argv = _words(node, self.text)
        if not argv:
            return
        self.out.append(argv)
        name = argv[0].rsplit("/", 1)[-1]
        if name == "busybox" and len(argv) > 1:
            name, argv = argv[1], argv[1:]
        if name in SHELLS and "-c" in argv[1:]:
            i = argv.index("-c", 1)
            if i + 1 < len(argv):
                self.out.extend(commands(argv[i + 1], self.depth + 1))
        elif name == "eval" and len(argv) > 1:
            self.out.extend(commands(" ".join(argv[1:]), self.depth + 1))
        elif name == "su" and "-c" in argv[1:]:
            j = argv.index("-c", 1)
            if j + 1 < len(argv):
                self.out.extend(commands(argv[j + 1], self.depth + 1))
        elif name in WRAPPERS and len(argv) > 1:
            inner = _unwrap(name, argv[1:])
            if inner:
                self.out.append(inner)


# Commands that run another command: their own options (and those taking a value) are skipped.
WRAPPERS = {"sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"}, "env": {"-u", "-C", "-S"},
            "nohup": set(), "nice": {"-n"}, "timeout": {"-s", "-k"}, "xargs": {"-I", "-n", "-P", "-L", "-d", "-a", "-E", "-s"},
            "doas": {"-u", "-C"}, "chroot": set(), "setsid": set(), "stdbuf": {"-i", "-o", "-e"}, "ionice": {"-c", "-n", "-p"}}  # fmt: skip


def _unwrap(name: str, args: list[str]) -> list[str]:
    takes_value = WRAPPERS[name]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a.startswith("-"):
            i += 2 if a in takes_value else 1
            continue
        if name == "env" and "=" in a:
            i += 1
            continue
        break
    rest = args[i:]
    if name in ("timeout", "chroot") and rest:
        rest = rest[1:]  # the duration / the new root
    return rest


def commands(text: str, depth: int = 0) -> list[list[str]]:
    """The argv of every command ``text`` would run, in order of appearance."""
    if depth > MAX_DEPTH or not text.strip():
        return []
    out: list[list[str]] = []
    try:
        for tree in bashlex.parse(text):
            _Collector(text, out, depth).visit(tree)
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError):
        try:
            out.append(shlex.split(text))
        except ValueError:
            out.append(text.split())
    return out


def command_lines(text: str) -> list[str]:
    """The same commands as single strings (what Sigma's CommandLine fields compare against)."""
    return [" ".join(argv) for argv in commands(text)]
