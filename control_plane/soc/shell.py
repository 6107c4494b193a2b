"""What a shell line or script would run, from its bash syntax tree — and what cannot be known before it runs.

``analyze`` walks bashlex's tree (lists, pipelines, compounds, functions, loops, redirections,
command and process substitutions, here-documents and here-strings, assignments) and returns:

* every command it would run, with wrappers unwrapped (``sudo``, ``env``, ``command``, ``exec``,
  ``time``, ``nice``, ``nohup``, ``xargs``, ``timeout``, …), the code given to ``sh -c`` (also as
  ``-ec``, ``-lc``, after ``--``), ``eval`` and ``su -c`` analysed as scripts of their own, literal
  variables and ``$(echo …)`` substituted, brace expansion applied, literal encoded payloads
  (``base64 -d``, ``printf '\\x..'``, ``xxd -r -p``) decoded and analysed, and each command's
  redirections written into its command line (``cat /dev/zero > /dev/sda``), so the same Sigma
  rules the SOC runs see the real command;
* findings for what only the run itself would show: a command name from a variable or a
  substitution, network content reaching an interpreter, a script whose body is a file or comes
  from a pipe, an interpreter running inline code, an undecodable payload into a shell, a fork
  bomb. Each finding says ``require_approval`` (or ``block`` for the fork bomb) — never ``allow``.

Text bashlex cannot parse is one finding of its own (``require_approval``), never a clean pass.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import bashlex

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "csh", "tcsh", "rbash"}
INTERPRETERS = {"python", "python2", "python3", "perl", "ruby", "node", "nodejs", "php", "lua", "luajit", "tclsh", "Rscript", "pwsh", "jshell", "irb"}
STARTUP_FILE_VARS = {"BASH_ENV", "ENV"}  # a file a non-interactive shell (bash, sh) sources before its own code
INLINE_CODE_FLAGS = {"python": {"-c"}, "perl": {"-e", "-E"}, "ruby": {"-e"}, "node": {"-e", "--eval", "-p", "--print"},
                     "php": {"-r"}, "lua": {"-e"}, "luajit": {"-e"}, "Rscript": {"-e"}, "pwsh": {"-c", "-Command"}, "irb": set(), "tclsh": set(), "jshell": set()}  # fmt: skip
NETWORK = {"curl", "wget", "nc", "ncat", "netcat", "socat", "fetch", "aria2c", "tftp", "ftp", "lftp", "http", "https", "telnet", "openssl", "scp", "sftp", "rsync", "ssh"}
DECODERS = {"base64", "base32", "xxd", "uudecode", "openssl", "rev", "gunzip", "zcat", "gzip", "bzip2", "xz", "unxz", "tr", "printf", "basenc"}
MAX_DEPTH = 8
MAX_COMMANDS = 400
MAX_EXPANSION = 64

# Commands that run another command. The value lists the wrapper's options that take an argument.
WRAPPERS: dict[str, set[str]] = {
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "--user", "--group", "--chdir"},
    "doas": {"-u", "-C"}, "env": {"-u", "-C", "-S", "--unset", "--chdir"}, "nohup": set(), "nice": {"-n", "--adjustment"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"}, "xargs": {"-I", "-i", "-n", "-P", "-L", "-l", "-d", "-a", "-E", "-e", "-s", "--max-args", "--max-procs", "--delimiter", "--arg-file", "--replace"},
    "chroot": {"--userspec", "--groups"}, "setsid": set(), "stdbuf": {"-i", "-o", "-e"}, "ionice": {"-c", "-n", "-p", "-t"},
    "command": set(), "exec": {"-a"}, "time": {"-f", "-o", "--format", "--output"}, "builtin": set(), "taskset": {"-p"},
    "chrt": set(), "flock": {"-w", "-E", "--timeout", "--conflict-exit-code"}, "watch": {"-n", "-d", "--interval"},
    "runuser": {"-u", "-g", "-G", "--user", "--group"}, "strace": {"-o", "-e", "-p", "-s", "-u"}, "ltrace": {"-o", "-e", "-p", "-s", "-u"},
    "unbuffer": set(), "nsenter": {"-t", "--target", "-n", "-m", "-p", "-u", "-i", "-S", "-G"}, "systemd-run": {"-u", "--unit", "-p", "--property", "-E", "--setenv"},
    "sg": set(), "firejail": set(), "proxychains": {"-f"}, "proxychains4": {"-f"}, "torsocks": set(), "caffeinate": set(), "schedtool": set(),
    "faketime": set(), "fakeroot": set(), "daemonize": set(), "start-stop-daemon": set(), "parallel": set(), "pkexec": {"--user"},
}  # fmt: skip
# options of wrappers that take no argument but end the option list early are treated like any option


@dataclass
class Command:
    """One command the text would run."""

    argv: list[str]
    redirects: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The program's base name."""
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else ""

    @property
    def line(self) -> str:
        """The command line as the rules see it: arguments, then each redirection."""
        return " ".join([*self.argv, *(f"{op} {t}" for op, t in self.redirects)])


@dataclass
class Finding:
    """Something only the run itself would show: decided by policy, never allowed silently."""

    kind: str
    action: str  # require_approval | block
    reason: str


@dataclass
class Analysis:
    """Every command a text would run, and what could not be decided from the text."""

    commands: list[Command] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)  # each pipeline's stages joined by " | ", for rules about the flow

    def find(self, kind: str, action: str, reason: str) -> None:
        """Record a finding once per kind and reason."""
        if not any(f.kind == kind and f.reason == reason for f in self.findings):
            self.findings.append(Finding(kind, action, reason))


class _Dynamic(str):
    """A word whose value is only known at run time (its text is what the line said)."""


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _interp_family(name: str) -> str | None:
    n = re.sub(r"[0-9.]+$", "", name)
    if n in INTERPRETERS or name in INTERPRETERS:
        return n if n in INTERPRETERS else name
    return None


def expand_braces(word: str, limit: int = MAX_EXPANSION) -> list[str]:
    """Bash brace expansion of one literal word ({a,b}, {1..3}, nested); the word itself if there is none."""
    depth, start = 0, -1
    for i, ch in enumerate(word):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                body, pre, post = word[start + 1 : i], word[:start], word[i + 1 :]
                alts = _split_top(body)
                if len(alts) == 1:
                    m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body) or re.fullmatch(r"([a-zA-Z])\.\.([a-zA-Z])", body)
                    if not m:
                        continue
                    a, b = m.group(1), m.group(2)
                    if a.lstrip("-").isdigit():
                        lo, hi = int(a), int(b)
                        step = 1 if hi >= lo else -1
                        alts = [str(x) for x in range(lo, hi + step, step)][:limit]
                    else:
                        step = 1 if ord(b) >= ord(a) else -1
                        alts = [chr(x) for x in range(ord(a), ord(b) + step, step)][:limit]
                out: list[str] = []
                for alt in alts:
                    for rest in expand_braces(post, limit):
                        out.extend(expand_braces(pre + alt + rest, limit) if "{" in alt else [pre + alt + rest])
                        if len(out) >= limit:
                            return out[:limit]
                return out
    return [word]


def _split_top(body: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}" and depth > 0
        cur += ch
    parts.append(cur)
    return parts


def _printf_decode(fmt: str) -> str:
    """What printf/echo -e print for a literal format with backslash escapes (\\xHH, \\NNN octal, \\n …)."""
    try:
        return codecs.decode(re.sub(r"\\([0-7]{1,3})", lambda m: f"\\x{int(m.group(1), 8):02x}", fmt), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return fmt


def _decode(decoder: list[str], data: str) -> str | None:
    """Decode a literal payload the way the pipeline's decoder would; None when we cannot."""
    name = _base(decoder[0]) if decoder else ""
    args = decoder[1:]
    try:
        if name in ("base64", "basenc") and any(a in ("-d", "--decode", "-D") or (a.startswith("-") and "d" in a and not a.startswith("--")) for a in args):
            return base64.b64decode(re.sub(r"\s+", "", data) + "===", validate=False).decode("utf-8", "replace")
        if name == "base32" and any(a in ("-d", "--decode") for a in args):
            s = re.sub(r"\s+", "", data).upper()
            return base64.b32decode(s + "=" * (-len(s) % 8)).decode("utf-8", "replace")
        if name == "xxd" and "-r" in " ".join(args):
            return binascii.unhexlify(re.sub(r"[^0-9a-fA-F]", "", data)).decode("utf-8", "replace")
        if name == "rev":
            return "\n".join(line[::-1] for line in data.split("\n"))
        if name == "openssl" and "base64" in args and "-d" in args:
            return base64.b64decode(re.sub(r"\s+", "", data) + "===").decode("utf-8", "replace")
    except (ValueError, binascii.Error):
        return None
    return None


class _Walker:
    def __init__(self, out: Analysis, depth: int, env: dict[str, str] | None = None, functions: set[str] | None = None) -> None:
        self.out, self.depth = out, depth
        self.env: dict[str, str] = dict(env or {})
        self.functions: set[str] = set(functions or ())

    # -- words ----------------------------------------------------------------------------------

    def word(self, node: Any) -> list[str]:
        """A word's possible values after substitution and brace expansion (a _Dynamic one if unknown)."""
        text = node.word
        parts = [p for p in getattr(node, "parts", []) or [] if p.kind in ("parameter", "commandsubstitution", "processsubstitution", "tilde")]
        if not parts:
            return expand_braces(text) if "{" in text else [text]
        # bashlex keeps $X / ${X} / $(…) verbatim in .word: each is replaced by its value when that is known
        raw = text
        dynamic = False
        value_of: list[tuple[str, str]] = []
        for p in parts:
            if p.kind == "parameter":
                v = self.env.get(p.value)
                if v is None:
                    dynamic = True
                    v = "$" + p.value
                value_of.append((f"${{{p.value}}}" if f"${{{p.value}}}" in raw else f"${p.value}", v))
            elif p.kind == "tilde":
                value_of.append((p.value, p.value))
            else:
                inner = _Walker(self.out, self.depth + 1, self.env, self.functions)
                before = len(self.out.commands)
                inner.node(p.command)
                produced = self.out.commands[before:]
                lit = _echo_literal(produced)
                tag = "$(" if p.kind == "commandsubstitution" else "<("
                seg = raw[raw.find(tag):] if tag in raw else ""
                if not seg and p.kind == "commandsubstitution" and raw.count("`") >= 2:  # the old `…` form
                    a = raw.index("`")
                    seg = raw[a : raw.index("`", a + 1) + 1]
                if lit is not None and p.kind == "commandsubstitution":
                    value_of.append((_matching(seg), lit))
                else:
                    dynamic = True
                    value_of.append((_matching(seg) if seg else "", _matching(seg) if seg else raw))
                    if p.kind == "processsubstitution" and any(c.name in NETWORK for c in produced):
                        self._net_marker = True
        for old, new in value_of:
            if old:
                raw = raw.replace(old, new, 1)
        vals = expand_braces(raw) if "{" in raw and not dynamic else [raw]
        return [_Dynamic(v) if dynamic else v for v in vals]

    # -- nodes ----------------------------------------------------------------------------------

    def node(self, n: Any) -> None:
        if len(self.out.commands) > MAX_COMMANDS:
            return
        kind = n.kind
        if kind == "list":
            for p in n.parts:
                if p.kind != "operator":
                    self.node(p)
            if any(p.kind == "operator" and p.op == "&" for p in n.parts):
                self._fork_bomb(n)
        elif kind == "pipeline":
            self.pipeline([p for p in n.parts if p.kind != "pipe"])
        elif kind == "command":
            self.command(n)
        elif kind == "compound":
            for p in n.list:
                if p.kind not in ("reservedword", "operator"):
                    self.node(p)
            for r in getattr(n, "redirects", []) or []:
                self._redirect_only(r)
        elif kind == "function":
            name = n.parts[0].word if n.parts and n.parts[0].kind == "word" else ""
            self.functions.add(name)
            self.current_function = name
            for p in n.parts[1:]:
                if p.kind not in ("reservedword", "operator", "word"):
                    self.node(p)
            self.current_function = None
        elif kind == "for":
            self._for(n)
        elif kind in ("if", "while", "until"):
            for p in n.parts:
                if p.kind not in ("reservedword", "operator"):
                    self.node(p)
        elif hasattr(n, "parts"):
            for p in n.parts:
                self.node(p)

    def _for(self, n: Any) -> None:
        parts = n.parts
        var = parts[1].word if len(parts) > 1 and parts[1].kind == "word" else None
        values: list[str] = []
        body = []
        seen_in = seen_do = False
        for p in parts[2:]:
            if p.kind == "reservedword":
                seen_in |= p.word == "in"
                seen_do |= p.word == "do"
                continue
            if seen_in and not seen_do and p.kind == "word":
                values.extend(self.word(p))
            elif seen_do:
                body.append(p)
        for v in (values or ["$" + (var or "x")])[:8]:
            w = _Walker(self.out, self.depth, {**self.env, **({var: v} if var and not isinstance(v, _Dynamic) and values else {})}, self.functions)
            for b in body:
                w.node(b)

    def _fork_bomb(self, n: Any) -> None:
        fn = getattr(self, "current_function", None)
        if fn and any(c.name == fn for c in self.out.commands):
            self.out.find("fork_bomb", "block", f"function {fn!r} starts copies of itself in the background (a fork bomb)")

    def _redirect_only(self, r: Any) -> None:
        if r.kind == "redirect" and getattr(r, "output", None) is not None and not isinstance(r.output, int):
            tgt = self.word(r.output)[0]
            self.out.commands.append(Command([":"], [(r.type, tgt)]))

    def command(self, n: Any, stdin: str | None = None, stdin_net: bool = False, stdin_encoded: bool = False) -> Command | None:
        argv: list[str] = []
        redirects: list[tuple[str, str]] = []
        heredoc: str | None = None
        assigns: dict[str, str] = {}
        for p in n.parts:
            if p.kind == "assignment":
                name, _, value = p.word.partition("=")
                val = value
                if getattr(p, "parts", None):
                    fake = type("W", (), {"word": value, "parts": [q for q in p.parts], "pos": (p.pos[0] + len(name) + 1, p.pos[1])})
                    vals = self.word(fake)
                    val = vals[0] if vals else value
                assigns[name] = val
            elif p.kind == "word":
                argv.extend(self.word(p))
            elif p.kind == "redirect":
                if getattr(p, "heredoc", None) is not None:
                    heredoc = p.heredoc.value.rsplit("\n", 1)[0] if "\n" in p.heredoc.value else ""
                    continue
                out = getattr(p, "output", None)
                if out is None or isinstance(out, int):
                    redirects.append((p.type, str(out)))
                    continue
                target = self.word(out)[0]
                if p.type == "<<<":
                    heredoc = str(target)
                    continue
                redirects.append((p.type, target))
        for k in STARTUP_FILE_VARS & set(assigns):
            self.out.find("script_file", "require_approval", f"{k} names a file every later shell sources, whose body cannot be checked here")
        if not argv:
            for k, v in assigns.items():
                if not isinstance(v, _Dynamic):
                    self.env[k] = v
                else:
                    self.env.pop(k, None)
            if redirects:
                self.out.commands.append(Command([":"], redirects))
            return None
        if heredoc is not None and stdin is None:
            stdin = heredoc
        return self.run(argv, redirects, stdin=stdin, stdin_net=stdin_net, stdin_encoded=stdin_encoded)

    # -- what a command does --------------------------------------------------------------------

    def run(self, argv: list[str], redirects: list[tuple[str, str]], *, stdin: str | None = None, stdin_net: bool = False,
            stdin_encoded: bool = False, depth: int = 0) -> Command:  # fmt: skip
        cmd = Command([str(a) for a in argv], redirects)
        self.out.commands.append(cmd)
        if depth > MAX_DEPTH:
            return cmd
        head = argv[0]
        if isinstance(head, _Dynamic) or head.startswith("$"):
            self.out.find("dynamic_command", "require_approval", f"the command name {head!r} is only known when it runs")
            return cmd
        name = _base(head)
        args = argv[1:]
        if name == "busybox" and args:
            return self.run(args, redirects, stdin=stdin, stdin_net=stdin_net, stdin_encoded=stdin_encoded, depth=depth + 1)
        if name in WRAPPERS:
            inner = _unwrap(name, args)
            if name == "xargs" and inner and _base(inner[0]) in DESTRUCTIVE:
                self.out.find("xargs", "require_approval", f"xargs gives {_base(inner[0])} arguments only known when it runs")
            if name == "watch" and len(inner) == 1:
                return self.script(inner[0], "watch")
            if inner:
                self.run(inner, redirects, stdin=stdin, stdin_net=stdin_net, stdin_encoded=stdin_encoded, depth=depth + 1)
            return cmd
        if name == "ip" and len(args) >= 3 and args[0] == "netns" and args[1] == "exec":
            self.run(args[3:], redirects, stdin=stdin, depth=depth + 1) if len(args) > 3 else None
            return cmd
        if name in SHELLS:
            code, script_file, reads_stdin = _shell_args(args)
            if code is not None:
                if isinstance(code, _Dynamic):
                    self.out.find("dynamic_script", "require_approval", f"{name} -c runs code only known when it runs")
                self.script(code, name)
            elif script_file is not None:
                if script_file.startswith("/dev/fd/") or script_file.startswith("<(") or isinstance(script_file, _Dynamic):
                    self.out.find("dynamic_script", "require_approval", f"{name} runs a script produced at run time ({script_file})")
                    if getattr(self, "_net_marker", False):
                        self.out.find("network_to_interpreter", "require_approval", f"{name} runs content fetched from the network")
                else:
                    self.out.find("script_file", "require_approval", f"{name} runs the script file {script_file}, whose body cannot be checked here")
            elif reads_stdin:
                self._stdin_code(name, stdin, stdin_net, stdin_encoded)
            return cmd
        if name in ("eval",):
            text = " ".join(str(a) for a in args)
            if any(isinstance(a, _Dynamic) for a in args):
                self.out.find("dynamic_script", "require_approval", "eval runs code only known when it runs")
            self.script(text, "eval")
            return cmd
        if name == "trap":
            rest = [a for a in args if a != "--"]
            if rest and not str(rest[0]).startswith("-") and len(rest) >= 2:
                # the handler runs later (on EXIT, DEBUG, a signal): judged now, as the code it is
                if isinstance(rest[0], _Dynamic):
                    self.out.find("dynamic_script", "require_approval", "trap installs code only known when it runs")
                self.script(rest[0], "trap")
            return cmd
        if name == "alias":
            for a in args:
                alias, eq, body = str(a).partition("=")
                if eq and body:
                    self.script(body, f"alias {alias}")  # what the alias will run when its name is typed
            return cmd
        if name in ("export", "declare", "typeset", "readonly", "local"):
            for a in args:
                if str(a).partition("=")[0] in STARTUP_FILE_VARS and "=" in str(a):
                    self.out.find("script_file", "require_approval", f"{str(a).partition('=')[0]} names a file every later shell sources, "
                                                                     "whose body cannot be checked here")  # fmt: skip
        if name in ("source", "."):
            target = args[0] if args else ""
            if target in ("/dev/stdin", "-", "/proc/self/fd/0") or target.startswith("<(") or isinstance(target, _Dynamic):
                self._stdin_code(name, stdin, stdin_net or getattr(self, "_net_marker", False), stdin_encoded)
                self.out.find("dynamic_script", "require_approval", f"{name} runs a script produced at run time")
            else:
                self.out.find("script_file", "require_approval", f"{name} runs the script file {target}, whose body cannot be checked here")
            return cmd
        if name in ("su",) and "-c" in args:
            i = args.index("-c")
            if i + 1 < len(args):
                self.script(args[i + 1], "su -c")
            return cmd
        if name in ("script",) and "-c" in args:
            i = args.index("-c")
            if i + 1 < len(args):
                self.script(args[i + 1], "script -c")
            return cmd
        fam = _interp_family(name)
        if fam:
            flags = INLINE_CODE_FLAGS.get(fam, set())
            if any(a in flags or any(a.startswith(f) and len(f) == 2 and len(a) > 2 and not a.startswith("--") for f in flags) for a in args):
                self.out.find("inline_code", "require_approval", f"{name} runs inline code ({' '.join(map(str, argv))[:120]})")
            elif not args or "-" in args or stdin is not None or stdin_net:
                self._stdin_code(name, stdin, stdin_net, stdin_encoded, interpreter=True)
            return cmd
        if name in ("awk", "gawk", "mawk", "nawk") and any("system(" in a or "| getline" in a or '|"' in a or "print >" in a for a in args):
            self.out.find("inline_code", "require_approval", f"{name} runs commands from its program ({' '.join(map(str, argv))[:120]})")
        if name == "find":
            self._find(args, depth)
        if name in ("tee",):
            for a in args:
                if not a.startswith("-"):
                    cmd.redirects.append((">>" if "-a" in args else ">", a))
        return cmd

    def _find(self, args: list[str], depth: int) -> None:
        for flag in ("-exec", "-execdir", "-ok", "-okdir"):
            if flag in args:
                i = args.index(flag)
                inner = []
                for a in args[i + 1 :]:
                    if a in (";", "+", "\\;"):
                        break
                    inner.append(a)
                if inner:
                    self.run(inner, [], depth=depth + 1)

    def _stdin_code(self, name: str, stdin: str | None, net: bool, encoded: bool, *, interpreter: bool = False) -> None:
        if net:
            self.out.find("network_to_interpreter", "require_approval", f"content from the network reaches {name}")
        if stdin is not None and not isinstance(stdin, _Dynamic):
            if interpreter:
                self.out.find("inline_code", "require_approval", f"{name} runs code given on its standard input")
            else:
                self.script(stdin, name)
            if encoded:
                self.out.find("encoded_payload", "require_approval", f"an encoded payload is decoded into {name}")
        elif stdin is None and not net and encoded:
            self.out.find("encoded_payload", "require_approval", f"an encoded payload is decoded into {name}")
        elif stdin is None and not net and not interpreter:
            self.out.find("stdin_script", "require_approval", f"{name} runs whatever arrives on its standard input")
        elif interpreter and not net:
            self.out.find("inline_code", "require_approval", f"{name} runs code from its standard input")

    def script(self, text: str, via: str) -> None:
        """Analyse a text handed to a shell as code."""
        if self.depth >= MAX_DEPTH:
            self.out.find("too_deep", "require_approval", f"code nested more than {MAX_DEPTH} levels deep ({via})")
            return
        _analyze_into(str(text), self.out, self.depth + 1, self.env, self.functions)

    def pipeline(self, stages: list[Any]) -> None:
        """Each stage; what flows between them (literal text, network content, decoded payloads) is followed."""
        carried: str | None = None  # literal text flowing down the pipe, if we know it
        net = encoded = False
        lines: list[str] = []
        for st in stages:
            if st.kind != "command":
                self.node(st)
                carried, net = None, net
                continue
            before = len(self.out.commands)
            cmd = self.command(st, stdin=carried, stdin_net=net, stdin_encoded=encoded)
            if cmd is None:
                carried = None
                continue
            produced = self.out.commands[before:]
            names = {c.name for c in produced}
            lines.append(cmd.line)
            lit = _echo_literal([cmd])
            if lit is not None:
                carried = lit
            elif cmd.name in DECODERS and cmd.name != "printf":
                decoded = _decode(cmd.argv, carried) if carried is not None else None
                carried = decoded
                encoded = True
            elif cmd.name == "cat" and len(cmd.argv) == 1:
                pass  # cat passes its input on
            else:
                carried = None
            if names & NETWORK:
                net = True
        if len(lines) > 1:
            self.out.pipelines.append(" | ".join(lines))


def _matching(seg: str) -> str:
    """The first $( … ) or <( … ) group of ``seg`` with balanced parentheses (or a `…` group)."""
    if seg.startswith("`"):
        return seg
    depth = 0
    for i, ch in enumerate(seg):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return seg[: i + 1]
    return seg


def _echo_literal(cmds: list[Command]) -> str | None:
    """The text an ``echo``/``printf`` command prints, when it is literal."""
    if len(cmds) != 1:
        return None
    c = cmds[0]
    if c.name not in ("echo", "printf") or any(isinstance(a, _Dynamic) for a in c.argv) or c.redirects:
        return None
    args = c.argv[1:]
    if c.name == "echo":
        flags = []
        while args and re.fullmatch(r"-[neE]+", args[0]):
            flags.append(args.pop(0))
        text = " ".join(args)
        return _printf_decode(text) if any("e" in f for f in flags) else text
    if not args:
        return ""
    fmt = args[0]
    if fmt in ("%s", "%b") and len(args) > 1:
        return _printf_decode(" ".join(args[1:])) if fmt == "%b" else " ".join(args[1:])
    return _printf_decode(fmt)


def _shell_args(args: list[str]) -> tuple[str | None, str | None, bool]:
    """(code given with -c, a script file, reads code from stdin) for a shell's arguments."""
    i = 0
    has_c = False
    reads_stdin = False
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a.startswith("-") and len(a) > 1 and not a.startswith("--"):
            if "c" in a[1:]:
                has_c = True
            if "s" in a[1:]:
                reads_stdin = True
            if a in ("-o", "+o", "-O", "+O"):
                i += 1
            i += 1
            continue
        if a.startswith("--"):
            i += 1
            continue
        if a.startswith("+"):
            i += 1
            continue
        break
    rest = args[i:]
    if has_c:
        return (rest[0] if rest else ""), None, False
    if rest and not reads_stdin:
        return None, rest[0], False
    return None, None, True


def _unwrap(name: str, args: list[str]) -> list[str]:
    takes_value = WRAPPERS[name]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a.startswith("-") and len(a) > 1:
            if a in takes_value:
                i += 2
            elif any(a.startswith(t) and len(t) == 2 and len(a) > 2 for t in takes_value):
                i += 1  # -n10: the value is attached
            else:
                i += 1
            continue
        if name == "env" and "=" in a:
            i += 1
            continue
        if name == "sudo" and "=" in a and not a.startswith("/"):
            i += 1
            continue
        break
    rest = args[i:]
    if name in ("timeout", "chroot", "taskset", "chrt", "flock", "sg") and rest:
        rest = rest[1:]  # the duration / new root / cpu mask / priority / lock file / group
    if name == "nsenter":
        return rest
    return rest


DESTRUCTIVE = {"rm", "shred", "dd", "chmod", "chown", "mkfs", "wipefs", "kill", "truncate", "mv", "unlink", "rmdir"}


# Arithmetic expansion bashlex cannot parse. Only plain arithmetic (numbers, variables, operators)
# is replaced by a number: an array subscript or a substitution inside $(( )) can run commands.
_ARITH = re.compile(r"\$\(\(([0-9A-Za-z_+\-*/%()<>=!&|^~?:,.\s]|\$[A-Za-z_][A-Za-z0-9_]*|\$[0-9#?])*?\)\)")


def _plain_arithmetic(text: str) -> str:
    return _ARITH.sub("0", text) if "$((" in text else text


def _analyze_into(text: str, out: Analysis, depth: int, env: dict[str, str] | None = None, functions: set[str] | None = None) -> None:
    if not text.strip():
        return
    text = _plain_arithmetic(text)
    try:
        trees = bashlex.parse(text)
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError, TypeError, ValueError, AssertionError, RecursionError) as exc:
        out.find("unparsed", "require_approval", f"the shell text could not be parsed ({type(exc).__name__}); it is not allowed unseen")
        try:
            argv = shlex.split(text)
        except ValueError:
            argv = text.split()
        if argv:  # still unwrapped and followed as far as a flat command allows
            _Walker(out, depth, env, functions).run(argv, [])
        return
    w = _Walker(out, depth, env, functions)
    for tree in trees:
        try:
            w.node(tree)
        except (AttributeError, IndexError, TypeError, KeyError, ValueError, RecursionError) as exc:
            out.find("unparsed", "require_approval", f"part of the shell text could not be followed ({type(exc).__name__})")


def analyze(text: str) -> Analysis:
    """Every command ``text`` would run and what cannot be decided before it runs."""
    out = Analysis()
    _analyze_into(text, out, 0)
    return out


def commands(text: str, depth: int = 0) -> list[list[str]]:
    """The argv of every command ``text`` would run, in order of appearance."""
    return [c.argv for c in analyze(text).commands]


def command_lines(text: str) -> list[str]:
    """The same commands as single strings with their redirections (what Sigma's CommandLine fields compare against)."""
    return [c.line for c in analyze(text).commands]
