"""A citizen texting 112 in a drill: through Twilio's inbound webhook (signed as Twilio signs) or
through the SMSC stand-in (an SMPP deliver_sm to the gateway's bind), plus AML texts and forms.

``text_via_twilio`` POSTs the form Twilio sends for an inbound message to the gateway's webhook
URL, signed with ``sim.twilio.sign``; ``text_via_smsc`` asks an in-process ``sim.smsc_server.Smsc`` to
deliver the text; ``text_via_smsc_control`` does the same through a separate SMSC process's
control API (``POST /sim/mo``). ``aml_sms`` and ``aml_form`` build what a handset sends.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from sim.smsc_server import Smsc
from sim.twilio import DEFAULT_ACCOUNT_SID
from sim.twilio_wire import sign


def twilio_inbound_form(sender: str, text: str, to: str = "+7112",
                        account_sid: str = DEFAULT_ACCOUNT_SID) -> dict[str, str]:
    """The form Twilio POSTs to a number's messaging webhook for one inbound SMS."""
    sid = "SM" + secrets.token_hex(16)
    return {"ToCountry": "KZ", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
            "Body": text, "To": to, "NumSegments": "1", "MessageSid": sid, "AccountSid": account_sid,
            "From": sender, "ApiVersion": "2010-04-01", "FromCountry": "KZ"}


async def text_via_twilio(url: str, auth_token: str, sender: str, text: str, *, to: str = "+7112",
                          client: httpx.AsyncClient | None = None) -> httpx.Response:
    """POST an inbound SMS to the gateway's Twilio webhook at ``url`` (the public URL it verifies)."""
    form = twilio_inbound_form(sender, text, to)
    headers = {"X-Twilio-Signature": sign(auth_token, url, form),
               "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "User-Agent": "TwilioProxy/1.1"}
    if client is not None:
        return await client.post(url, content=urlencode(form), headers=headers)
    async with httpx.AsyncClient(timeout=10.0) as own:
        return await own.post(url, content=urlencode(form), headers=headers)


async def text_via_smsc(smsc: Smsc, sender: str, text: str, *, to: str = "112") -> list[int]:
    """Have the SMSC stand-in deliver the text to the gateway's bind; each part's deliver_sm_resp status."""
    return await smsc.send_mo(sender.lstrip("+"), to, text)


async def text_via_smsc_control(control_url: str, sender: str, text: str, *, to: str = "112") -> list[int]:
    """The same through a separate ``python -m sim.smsc`` process (its ``control`` URL, ending /sim)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        answer = await client.post(f"{control_url}/mo", json={"source": sender.lstrip("+"), "destination": to,
                                                              "text": text})
    answer.raise_for_status()
    return list(answer.json()["statuses"])


def aml_sms(lat: float, lon: float, radius_m: float = 15, *, when: datetime | None = None, method: str = "G",
            imei: str = "356938035643809", imsi: str = "401021234567890") -> str:
    """An AML SMS as a handset sends it (ETSI TS 103 625 layout), ``ml`` counting the whole text."""
    top = (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    head = (f'A"ML=1;lt={lat:+.5f};lg={lon:+.5f};rd={radius_m:g};top={top};lc=68;pm={method};si={imsi};'
            f"ei={imei};mcc=401;mnc=02;ml=")
    length = len(head) + 3
    return f"{head}{length:03d}"


def aml_form(number: str, lat: float, lon: float, accuracy_m: float = 12, *, when: datetime | None = None) -> str:
    """An AML HTTPS body (form-encoded) as Android ELS posts it."""
    ms = int((when or datetime.now(UTC)).timestamp() * 1000)
    return urlencode({"v": "3", "emergency_number": "112", "time": str(ms), "location_time": str(ms),
                      "location_latitude": f"{lat:.6f}", "location_longitude": f"{lon:.6f}",
                      "location_accuracy": f"{accuracy_m:g}", "location_confidence": "0.68",
                      "location_source": "gps", "device_number": number, "cell_network_mcc": "401",
                      "cell_network_mnc": "02"})
