"""Twilio message status callbacks: check who sent them, then say what they mean as a ``Receipt``.

Theory of operation: every ``Messages.create`` names a StatusCallback URL that carries the
message's idempotency key as a query parameter (``callback_url``). Twilio POSTs a form to that
URL each time the message changes state and signs the request with ``X-Twilio-Signature``:
HMAC-SHA1, keyed with the account's auth token, over the full URL followed by every POST
parameter name and value in sorted order, base64-encoded. Because the URL is signed, the key in
its query cannot be altered either, so a verified callback names exactly one of our messages.

The check uses twilio's own ``RequestValidator`` so we agree with the provider byte for byte
(including its habit of signing the URL with or without the default port). Verification must be
done against the *public* URL Twilio called, not the one a reverse proxy hands us.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from twilio.request_validator import RequestValidator

from channels.base import DeliveryState, Receipt
from gateway.errors import ProtocolError
from gateway.protocols import replay

SIGNATURE_HEADER = "X-Twilio-Signature"
KEY_PARAM = "idempotency_key"

# Outbound message statuses as Twilio names them, and what the engine should make of each.
_STATES: dict[str, DeliveryState] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}

# Delivery error codes after which a later attempt can still reach the person (the handset was
# off or the network busy); every other code means the number or the content is the problem.
_RETRYABLE_CODES = frozenset({"30001", "30003", "30008", "30017", "30022"})

_CODE_MEANINGS = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by carrier",
    "30008": "unknown error",
    "30017": "carrier network congestion",
    "30022": "rate limits exceeded",
}


def callback_url(base_url: str, idempotency_key: str) -> str:
    """The StatusCallback URL for one message: ``base_url`` with the idempotency key added to its
    query (existing query parameters are kept)."""
    parts = urlsplit(base_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.append((KEY_PARAM, idempotency_key))
    return urlunsplit(parts._replace(query=urlencode(query)))


def verify(url: str, form: Mapping[str, str], signature: str | None, auth_token: str) -> None:
    """Check a callback's ``X-Twilio-Signature``.

    ``url`` is the full public URL Twilio requested (scheme, host, path and query), ``form`` the
    POST parameters. Raises ``ProtocolError`` if the signature is missing or does not match.
    """
    if not signature:
        raise ProtocolError(f"Twilio callback without {SIGNATURE_HEADER}")
    if not RequestValidator(auth_token).validate(url, dict(form), signature):
        raise ProtocolError(f"Twilio callback with a forged or stale {SIGNATURE_HEADER} for {url}")


def idempotency_key(url: str) -> str:
    """The idempotency key carried in a StatusCallback URL. Raises ``ProtocolError`` if absent."""
    values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == KEY_PARAM]
    if len(values) != 1 or not values[0]:
        raise ProtocolError(f"Twilio callback URL must carry exactly one {KEY_PARAM}: {url}")
    return values[0]


def receipt(url: str, form: Mapping[str, str]) -> Receipt:
    """What an (already verified) status callback says about our message, with its replay key
    (SID and status: Twilio sends a callback again when our answer did not reach it).

    Raises ``ProtocolError`` if the form lacks MessageSid or MessageStatus, or names a status an
    outbound message cannot have.
    """
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid:
        raise ProtocolError("Twilio callback without MessageSid")
    found = receipt_for(idempotency_key(url), sid, status, form.get("ErrorCode", ""))
    return msgspec.structs.replace(found, replay_key=replay.twilio_status(sid, status))


def receipt_for(key: str, sid: str, status: str, error_code: str = "") -> Receipt:
    """The receipt for a message Twilio reports as ``status`` (with ``error_code`` when it failed),
    the same whether the report came from a callback, the create answer or a lookup.

    Raises ``ProtocolError`` for a status an outbound message cannot have.
    """
    state = _STATES.get(status)
    if state is None:
        raise ProtocolError(f"Twilio reports message {sid} with unknown status {status!r}")
    if state != "failed":
        return Receipt(idempotency_key=key, state=state, provider_id=sid)
    return Receipt(
        idempotency_key=key,
        state="failed",
        provider_id=sid,
        error=_describe(status, error_code),
        retryable=error_code in _RETRYABLE_CODES,
    )


def verified_receipt(url: str, form: Mapping[str, str], signature: str | None, auth_token: str) -> Receipt:
    """``verify`` then ``receipt``: the one call a callback endpoint needs."""
    verify(url, form, signature, auth_token)
    return receipt(url, form)


def _describe(status: str, code: str) -> str:
    if not code:
        return f"twilio: {status}"
    meaning = _CODE_MEANINGS.get(code)
    return f"twilio: {status}, error {code}" + (f" ({meaning})" if meaning else "")
