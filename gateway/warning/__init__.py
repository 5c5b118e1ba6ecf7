"""Public warnings: the CAP 1.2 alert model and the workflow that composes, approves and sends it."""
