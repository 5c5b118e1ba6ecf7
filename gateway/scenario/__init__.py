"""Escalation by category scenario: the catalogue of categories and the response scenarios."""
