"""E-mail messages for public warnings: MIME building, address checks, Message-IDs. Pure: no I/O.

Theory of operation: a warning goes to thousands of recipients with the same rendered text, so
the expensive part (MIME structure, base64 bodies, RFC 2047 subject) is rendered once per
distinct content by ``render_content`` and each recipient's copy is that block with three
personal header lines in front (``personalize``: To, Message-ID, Date). Header order does not
matter in RFC 5322, so the result is the same message the stdlib would build for each
recipient, at a fraction of the cost.

Everything that goes into a header is checked first: a line break in a subject, a display
name, an address or an alert id would let text written by someone else add headers (or a
whole second message), so it is refused with ``EmailContentError`` rather than cleaned up.

The Message-ID is derived from a stable key (the idempotency key of a one-recipient message,
or the content of a shared transaction) so that a retried send carries the same Message-ID
and a receiving system can drop the duplicate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from channels.base import Message
from gateway.errors import ChannelError

# 7bit: non-ASCII bodies go out base64/quoted-printable, so no relay needs 8BITMIME to carry them.
POLICY = policy.SMTP.clone(cte_type="7bit")
UNDISCLOSED = "undisclosed-recipients:;"

# Characters that end a header line for some reader (RFC 5322, or Python's str.splitlines).
_LINE_BREAKS = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class EmailContentError(ChannelError):
    """A message cannot be sent as a safe e-mail: a bad address or a line break in a header field."""


def check_header(field: str, value: str) -> str:
    """Return ``value`` if it can go into a header; raise ``EmailContentError`` if it holds a line break."""
    if _LINE_BREAKS.search(value):
        raise EmailContentError(f"{field}: line break or NUL in a header field (header injection refused)")
    return value


def normalize_address(address: str) -> str:
    """``local@domain`` with the domain in ASCII (IDNA) and lower case.

    Only dot-atom local parts in ASCII: quoted or non-ASCII local parts would need SMTPUTF8,
    which relays do not reliably offer. Raises ``EmailContentError``.
    """
    check_header("address", address)
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise EmailContentError(f"address {address!r}: expected local@domain")
    if not _LOCAL.match(local) or len(local) > 64:
        raise EmailContentError(f"address {address!r}: local part must be plain ASCII (no quotes, spaces, <>)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise EmailContentError(f"address {address!r}: domain is not a valid (international) name") from exc
    if not _DOMAIN.match(ascii_domain) or len(ascii_domain) > 253:
        raise EmailContentError(f"address {address!r}: domain is not a valid host name")
    return f"{local}@{ascii_domain}"


def domain_of(address: str) -> str:
    return normalize_address(address).rpartition("@")[2]


def message_id(key: str, domain: str) -> str:
    """A Message-ID that depends only on ``key`` and ``domain``: retries of a send carry the same one."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<ecgw.{digest}@{domain}>"


def content_key(message: Message) -> tuple[str, ...]:
    """What makes two messages' content identical (everything but the recipient)."""
    return (message.alert_id, message.language, message.subject, message.body, message.html)


def group_key(message: Message) -> str:
    """Message-ID key for a copy shared by several recipients: same alert and text, same key, however
    the recipients were grouped into transactions on this or an earlier attempt."""
    return "group\x1f" + "\x1f".join(content_key(message))


def check(message: Message) -> None:
    """Raise ``EmailContentError`` if ``message`` cannot be sent safely (checked before any I/O)."""
    normalize_address(message.address)
    check_header("subject", message.subject)
    check_header("alert_id", message.alert_id)
    check_header("language", message.language)


def render_content(message: Message, *, from_address: str, from_name: str = "") -> bytes:
    """Every header and body line shared by all recipients of this content (CRLF line endings).

    text/plain alone, or multipart/alternative (text, then HTML) when the message has HTML; UTF-8;
    the subject encoded per RFC 2047 by the stdlib. Raises ``EmailContentError``.
    """
    check(message)
    sender = normalize_address(from_address)
    local, _, domain = sender.rpartition("@")
    mail = EmailMessage(policy=POLICY)
    mail["From"] = Address(display_name=check_header("from_name", from_name), username=local, domain=domain)
    mail["Subject"] = message.subject
    # RFC 3834: vacation responders and the like must not answer a warning.
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-ECGW-Alert"] = message.alert_id
    mail.set_content(message.body, charset="utf-8")
    if message.html:
        mail.make_alternative()
        part = EmailMessage(policy=POLICY)
        part.set_content(message.html, subtype="html", charset="utf-8")
        del part["MIME-Version"]  # belongs on the top level only; set_content stamps it on every EmailMessage
        mail.attach(part)
    # Added last: set_content and make_alternative move Content-* headers into the parts.
    mail["Content-Language"] = message.language
    return mail.as_bytes()


def personalize(content: bytes, *, to: str | None, message_id: str, date: datetime) -> bytes:
    """One recipient's copy: To (or ``undisclosed-recipients:;`` when the recipients are only in the
    envelope), Message-ID and Date in front of the shared ``content``. ``to`` must be normalized."""
    check_header("message_id", message_id)
    head = (f"To: {check_header('to', to) if to else UNDISCLOSED}\r\nMessage-ID: {message_id}\r\n"
            f"Date: {format_datetime(date)}\r\n")
    return head.encode("ascii") + content


def build(
    message: Message, *, from_address: str, from_name: str = "", date: datetime, shared: bool = False
) -> tuple[str, bytes]:
    """(Message-ID, bytes) of one e-mail for ``message``: personal To and a Message-ID from its
    idempotency key, or with ``shared`` the copy for several envelope recipients. Raises ``EmailContentError``."""
    domain = domain_of(from_address)
    key = group_key(message) if shared else message.idempotency_key
    mid = message_id(key, domain)
    to = None if shared else normalize_address(message.address)
    body = render_content(message, from_address=from_address, from_name=from_name)
    return mid, personalize(body, to=to, message_id=mid, date=date)


def plan(messages: Sequence[Message], per_transaction: int) -> list[list[int]]:
    """Indexes of ``messages`` grouped into SMTP transactions.

    One message per transaction when ``per_transaction`` is 1 (each recipient gets a personal To);
    otherwise messages with identical content share a transaction of at most ``per_transaction``
    distinct addresses, in order of first appearance.
    """
    if per_transaction <= 1:
        return [[i] for i in range(len(messages))]
    open_groups: dict[tuple[str, ...], list[int]] = {}
    seen: dict[tuple[str, ...], set[str]] = {}
    out: list[list[int]] = []
    for i, message in enumerate(messages):
        key = content_key(message)
        group = open_groups.get(key)
        address = message.address.lower()
        if group is None or len(group) >= per_transaction or address in seen[key]:
            group = open_groups[key] = []
            seen[key] = set()
            out.append(group)
        group.append(i)
        seen[key].add(address)
    return out
