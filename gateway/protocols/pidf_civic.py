"""Civic addresses (RFC 4776 / RFC 5139, extensions RFC 6848) in a PIDF-LO, and their one-line text (pure).

Every element of a civicAddress is kept, extensions of any namespace too: a dispatcher reads an unknown
"gate 36B" better than nothing. Keys are the element's local name (``A1``, ``RDSEC``, ``MP``, ``gate``);
an extension whose name clashes with one already taken keeps its namespace (``{uri}name``).
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from gateway.protocols.shapes import LocationError

CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"  # RFC 5139
CA_EXT = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr:ext"  # RFC 6848
CIVIC_LOC = "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc"  # RFC 4119's original civic format
# RFC 5139 section 3 (RFC 4776 CAtypes with RD, RDSEC, RDBR, RDSUBBR, PRM, POM, PCN, POBOX, ADDCODE, SEAT).
CIVIC_FIELDS = ("country", "A1", "A2", "A3", "A4", "A5", "A6", "PRD", "POD", "STS", "HNO", "HNS",
                "LMK", "LOC", "FLR", "NAM", "PC", "BLD", "UNIT", "ROOM", "SEAT", "PLC", "RD",
                "RDSEC", "RDBR", "RDSUBBR", "PRM", "POM", "PCN", "POBOX", "ADDCODE")
MAX_VALUE = 128
MAX_FIELDS = 64


def is_civic(el: Element) -> bool:
    return el.tag in (f"{{{CA}}}civicAddress", f"{{{CIVIC_LOC}}}civicAddress")


def read_civic(el: Element, notes: list[str]) -> dict[str, str]:
    """Every non-empty element of a civicAddress. Raises LocationError when none has a value."""
    civic: dict[str, str] = {}
    if el.tag == f"{{{CIVIC_LOC}}}civicAddress":
        notes.append("civic address in RFC 4119's civicLoc namespace (RFC 5139 uses civicAddr): read alike")
    for child in el:
        if not isinstance(child.tag, str):
            continue
        value = " ".join("".join(child.itertext()).split())[:MAX_VALUE]
        if not value:
            continue
        key = _key(child.tag, civic)
        civic[key] = f"{civic[key]}; {value}"[:MAX_VALUE] if key in civic else value
        if len(civic) >= MAX_FIELDS:
            notes.append(f"civic address cut at {MAX_FIELDS} fields")
            break
    if not civic:
        raise LocationError("civicAddress without any value")
    return civic


def _key(tag: str, taken: dict[str, str]) -> str:
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    local = local[:40]
    if namespace in (CA, CA_EXT, CIVIC_LOC, ""):
        return local
    return local if local not in taken and local not in CIVIC_FIELDS else f"{{{namespace[:80]}}}{local}"


def civic_text(civic: dict[str, str]) -> str:
    """A one-line address, most specific last: 'KZ, Алматы, Абая 10, fl. 3'."""
    street = " ".join(x for x in (civic.get("PRM", ""), civic.get("PRD", ""), civic.get("STP", ""),
                                  civic.get("A6", "") or civic.get("RD", ""), civic.get("STS", ""),
                                  civic.get("POD", ""), civic.get("POM", ""), civic.get("HNP", ""),
                                  civic.get("HNO", ""), civic.get("HNS", "")) if x)
    parts = [civic.get(k, "") for k in ("country", "A1", "A2", "A3", "A4", "A5")]
    parts += [street, civic.get("NAM", "")]
    labels = (("BLD", "bldg."), ("FLR", "fl."), ("UNIT", "unit"), ("ROOM", "room"), ("SEAT", "seat"))
    parts += [f"{label} {civic[k]}" for k, label in labels if k in civic]
    parts += [civic.get("LMK", ""), civic.get("LOC", "")]
    kept: list[str] = []
    for part in parts:  # A1 and A3 are often the same city
        if part and part not in kept:
            kept.append(part)
    return ", ".join(kept)
