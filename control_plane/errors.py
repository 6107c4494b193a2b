"""The root of every error govctl raises on purpose.

Each package defines a few typed subclasses. Every error carries a one-line message saying
what was wrong and a hint saying what to do next; the CLI prints both on one line and the API
maps them to status codes without leaking internals.
"""

from __future__ import annotations


class GovctlError(Exception):
    """Base class: a message, a hint for the operator, and a process exit code."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """Render as the single line the CLI prints."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(GovctlError):
    """The configuration file is unreadable or invalid."""

    exit_code = 2
    http_status = 400


class GateError(GovctlError):
    """Root of the operation gate's refusals (here, so an operation's own parser can raise one without importing the gate)."""

    http_status = 400
