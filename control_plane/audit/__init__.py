"""The tamper-evident audit ledger (事中全留痕、事后可追溯)."""

from control_plane.audit.models import AuditEvent, AuditRecord
from control_plane.audit.service import AuditError, Ledger, VerifyReport

__all__ = ["AuditEvent", "AuditRecord", "AuditError", "Ledger", "VerifyReport"]
