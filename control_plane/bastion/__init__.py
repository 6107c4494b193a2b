"""The operations-audit bastion (运维安全审计 / 堡垒机): every operator session on the pools' hosts goes through the gate.

People log in to an SSH gateway with their own key and a TOTP code; a grant says which hosts and
system accounts they may reach and until when. Each line an interactive shell is about to run is
read back from the shell itself and judged by the SOC's inline engine (the same Sigma rules and
correlation context as the gate), before the Enter key reaches the host: blocked, paused for an
approval bound to the exact command on the exact host, run with an alert, or run. Exec requests
and SFTP writes are judged the same way. Every session is recorded (asciicast v2) in SM4-GCM
chunks chained by SM3 and signed with SM2; the command log goes to the audit ledger and to the
SOC as ``govctl.bastion`` events.
"""
