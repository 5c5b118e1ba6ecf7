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


class KamailioError(GatewayError):
    """Kamailio (the SIP proxy in front of the Asterisk nodes) could not be configured, started or asked."""


class InputError(GatewayError):
    """A request or document is not what it must be; whoever sent it can fix it (HTTP 400)."""


class Conflict(GatewayError):
    """The request does not fit the current state: an alert already approved, a closed incident, a busy
    unit, another officer's change first (HTTP 409)."""


class StoreError(GatewayError):
    """The incident store could not read or write."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached (refused, timed out, connection lost): nothing it said was
    wrong with the request, so a write may be kept elsewhere and tried again (``incident.spool``)."""


class NotFound(StoreError):
    """The requested record does not exist."""


class DirectoryImportError(GatewayError):
    """A subscriber directory file could not be read at all (bad rows are reported, not raised)."""


class DrillError(GatewayError):
    """A drill file is invalid or a drill could not be run."""


class ChannelError(GatewayError):
    """A delivery channel could not be opened or its provider answered outside its protocol."""


class ProtocolError(GatewayError):
    """Bytes or documents from a peer do not follow the protocol (bad CRC, bad CAP, bad PDU)."""


class AlertError(InputError):
    """A public warning cannot be drafted, approved, sent, updated or cancelled as asked."""


class AlertNotFound(AlertError, NotFound):
    """No alert with that id."""


class AlertConflict(AlertError, Conflict):
    """The alert is not in the state the action needs (only a draft can be approved, ...)."""


class TemplateError(AlertError):
    """An alert template is missing, malformed, or renders with an error."""


class ZoneError(AlertError):
    """A zone or an alert area is unknown or geometrically invalid."""
