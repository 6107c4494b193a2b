"""The program as the standard CLI runs it: ``pulumi preview`` / ``up`` at the repository root (``main: infra/`` in Pulumi.yaml).

The language host is ``infra/langhost.py``; the stack's settings are the ones ``govctl deploy`` last
used for it (see ``infra.program.load_spec``).
"""

from infra.program import program

program()
