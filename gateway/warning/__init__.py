"""Public warnings: CAP 1.2 documents, multilingual alert templates and SMS arithmetic."""
