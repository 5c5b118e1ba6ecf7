"""The gateway's one error hierarchy. Library errors are translated into these at the edge."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration cannot be used; ``problems`` lists every finding (file, key, expected)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class AsteriskError(GatewayError):
    """Asterisk could not be provisioned, started, reached or commanded."""


class AriError(AsteriskError):
    """An ARI request failed or ARI is unreachable."""


class AmiError(AsteriskError):
    """An AMI request failed or AMI is unreachable."""


class StoreError(GatewayError):
    """The incident store could not read or write."""


class NotFound(StoreError):
    """The requested record does not exist."""


class DirectoryImportError(GatewayError):
    """A subscriber directory file could not be read at all (bad rows are reported, not raised)."""


class DrillError(GatewayError):
    """A drill file is invalid or a drill could not be run."""
