"""The ledger's operations: sign a checkpoint now, rotate the platform key."""

from __future__ import annotations

from typing import Any

from control_plane.crypto import SM2PrivateKey
from control_plane.crypto.keys import install_platform_key
from control_plane.operation import Call, Operation


def _checkpoint(call: Call) -> dict[str, Any]:
    cp = call.ctx.ledger.checkpoint()
    return {"checkpoint": cp["seq"] if cp else None}


def _rotate(call: Call) -> dict[str, Any]:
    """A new platform key; the old one signs the hand-over, which the ledger records and checkpoints."""
    ctx = call.ctx
    new = SM2PrivateKey.generate()
    out = ctx.ledger.rotate(new, actor=call.by)  # from here the ledger (and so ctx.signer) signs with the new key
    install_platform_key(ctx.settings.key_dir, new, ctx.key_passphrase(), ctx.settings.crypto.kdf_iterations)
    return out


OPERATIONS = (
    Operation("audit.checkpoint", r"^audit$", "audit", _checkpoint, description="sign the audit chain head now"),
    Operation("keys.rotate", r"^platform$", "platform", _rotate, description="replace the platform SM2 key"),
)
