"""The console declares no operations of its own: every button submits one of the domains' operations through the gate."""

OPERATIONS = ()
