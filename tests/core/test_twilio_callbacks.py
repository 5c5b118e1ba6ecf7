"""Twilio status callbacks, pure: signature verification and form -> Receipt (no loop, no I/O).

Signatures here are computed by a third, independent implementation of Twilio's scheme (HMAC-SHA1
over the URL then each sorted parameter name and value, base64), so the validator is checked
against the specification rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from channels.base import DeliveryState, Receipt
from channels.twilio_callbacks import (
    KEY_PARAM,
    callback_url,
    idempotency_key,
    receipt,
    receipt_for,
    verified_receipt,
    verify,
)
from gateway.errors import ProtocolError

TOKEN = "12345678901234567890123456789012"
BASE = "https://gw.example.kz/twilio/status"
KEY = "alert-7f3a/twilio/42"


def signed(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    payload = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def status_form(status: str = "delivered", **extra: str) -> dict[str, str]:
    form = {
        "AccountSid": "AC" + "a" * 32, "ApiVersion": "2010-04-01", "From": "+15005550006",
        "MessageSid": "SM" + "b" * 32, "SmsSid": "SM" + "b" * 32, "MessageStatus": status, "SmsStatus": status,
        "To": "+77011234567",
    }
    form.update(extra)
    return form


URL = callback_url(BASE, KEY)


def test_callback_url_carries_the_key_and_keeps_existing_query() -> None:
    assert URL == "https://gw.example.kz/twilio/status?idempotency_key=alert-7f3a%2Ftwilio%2F42"
    assert idempotency_key(URL) == KEY
    with_query = callback_url(BASE + "?channel=twilio&x=", KEY)
    assert with_query.startswith(BASE + "?channel=twilio&x=&")
    assert idempotency_key(with_query) == KEY


def test_valid_signature_passes() -> None:
    form = status_form()
    verify(URL, form, signed(URL, form), TOKEN)


def test_signature_over_url_with_default_port_also_passes() -> None:
    # Twilio is inconsistent about writing :443 into the URL it signs; both forms are genuine.
    form = status_form()
    with_port = URL.replace("gw.example.kz", "gw.example.kz:443")
    verify(URL, form, signed(with_port, form), TOKEN)


def test_forged_signature_is_refused() -> None:
    form = status_form()
    with pytest.raises(ProtocolError, match="forged"):
        verify(URL, form, base64.b64encode(b"x" * 20).decode(), TOKEN)


def test_signature_made_with_another_token_is_refused() -> None:
    form = status_form()
    with pytest.raises(ProtocolError):
        verify(URL, form, signed(URL, form, token="another-accounts-token-000000000"), TOKEN)


def test_wrong_url_is_refused() -> None:
    form = status_form()
    signature = signed(URL, form)
    with pytest.raises(ProtocolError):
        verify(URL.replace("gw.example.kz", "evil.example.com"), form, signature, TOKEN)
    # Moving a genuine callback onto another message's key breaks the signature too.
    with pytest.raises(ProtocolError):
        verify(callback_url(BASE, "alert-7f3a/twilio/43"), form, signature, TOKEN)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_is_refused(signature: str | None) -> None:
    with pytest.raises(ProtocolError, match="without X-Twilio-Signature"):
        verify(URL, status_form(), signature, TOKEN)


@pytest.mark.parametrize(("name", "value"), [
    ("MessageStatus", "undelivered"),  # a changed value
    ("ErrorCode", "30003"),  # an added parameter
])
def test_tampered_parameter_is_refused(name: str, value: str) -> None:
    form = status_form("delivered")
    signature = signed(URL, form)
    tampered = dict(form, **{name: value})
    with pytest.raises(ProtocolError):
        verify(URL, tampered, signature, TOKEN)


def test_dropped_parameter_is_refused() -> None:
    form = status_form("undelivered", ErrorCode="30003")
    signature = signed(URL, form)
    del form["ErrorCode"]
    with pytest.raises(ProtocolError):
        verify(URL, form, signature, TOKEN)


def test_non_ascii_values_are_signed_as_utf8() -> None:
    form = status_form(From="ТЖД-112")
    verify(URL, form, signed(URL, form), TOKEN)


@pytest.mark.parametrize(("status", "state"), [
    ("accepted", "queued"), ("scheduled", "queued"), ("queued", "queued"), ("sending", "sent"),
    ("sent", "sent"), ("delivered", "delivered"), ("read", "delivered"),
])
def test_form_to_receipt(status: str, state: DeliveryState) -> None:
    sid = "SM" + "b" * 32
    assert receipt(URL, status_form(status)) == Receipt(idempotency_key=KEY, state=state, provider_id=sid,
                                                        replay_key=f"twilio-status:{sid}:{status}")


def test_undelivered_to_an_unreachable_handset_may_be_retried() -> None:
    got = receipt(URL, status_form("undelivered", ErrorCode="30003"))
    assert got.state == "failed" and got.retryable
    assert got.error == "twilio: undelivered, error 30003 (unreachable destination handset)"


def test_failed_for_a_bad_destination_is_final() -> None:
    got = receipt(URL, status_form("failed", ErrorCode="30005"))
    assert got.state == "failed" and not got.retryable and "30005" in got.error
    unexplained = receipt(URL, status_form("undelivered", ErrorCode="39999"))
    assert unexplained.error == "twilio: undelivered, error 39999" and not unexplained.retryable
    assert receipt(URL, status_form("canceled")).error == "twilio: canceled"


def test_legacy_sms_fields_are_understood() -> None:
    form = {"SmsSid": "SM" + "c" * 32, "SmsStatus": "sent", "To": "+77011234567"}
    assert receipt(URL, form).provider_id == "SM" + "c" * 32


def test_unknown_or_inbound_status_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unknown status 'received'"):
        receipt(URL, status_form("received"))
    with pytest.raises(ProtocolError, match="unknown status ''"):
        receipt(URL, {"MessageSid": "SM" + "b" * 32})
    with pytest.raises(ProtocolError):
        receipt_for(KEY, "SM1", "bogus")


def test_missing_message_sid_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="MessageSid"):
        receipt(URL, {"MessageStatus": "sent"})


@pytest.mark.parametrize("url", [BASE, BASE + f"?{KEY_PARAM}=", BASE + f"?{KEY_PARAM}=a&{KEY_PARAM}=b"])
def test_callback_url_without_exactly_one_key_is_a_protocol_error(url: str) -> None:
    with pytest.raises(ProtocolError, match=KEY_PARAM):
        receipt(url, status_form())


def test_verified_receipt_checks_then_parses() -> None:
    form = status_form("undelivered", ErrorCode="30003")
    assert verified_receipt(URL, form, signed(URL, form), TOKEN).retryable
    with pytest.raises(ProtocolError):
        verified_receipt(URL, form, signed(URL, status_form()), TOKEN)
