"""Every text and list a client can send has a documented limit (OpenAPI maxLength/maxItems, from the
same Structs the routes decode with), so nothing is unbounded and nothing needs cutting quietly."""

from __future__ import annotations

from typing import Any

from gateway.web.openapi import openapi

REQUEST_BODIES = ["NewIncident", "CategoryBody", "gateway.web.scenario.StatusBody", "TextBody", "AssignBody",
                  "gateway.web.units.StatusBody", "DraftSpec", "ApproveBody",
                  "CancelBody", "Recipient", "NoteBody", "AudienceQuery"]


def unbounded(schema: dict[str, Any] | bool, components: dict[str, Any], path: str) -> list[str]:
    if not isinstance(schema, dict):  # ``items: false`` after a tuple's prefixItems
        return []
    if "$ref" in schema:
        return unbounded(components[schema["$ref"].rsplit("/", 1)[1]], components, path)
    found: list[str] = []
    for option in schema.get("anyOf", []):
        found += unbounded(option, components, path)
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "maxLength" not in schema:
        found.append(path)
    if kind == "array":
        if "maxItems" not in schema and "prefixItems" not in schema:
            found.append(path + "[]")
        for item in [schema.get("items", {}), *schema.get("prefixItems", [])]:
            found += unbounded(item, components, path + "[]")
    if kind == "object":
        if isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema:
            found.append(path + "{}")
        if isinstance(schema.get("additionalProperties"), dict):
            found += unbounded(schema["additionalProperties"], components, path + "{}")
        for name, prop in schema.get("properties", {}).items():
            found += unbounded(prop, components, f"{path}.{name}")
    return found


def test_every_request_body_field_has_a_documented_limit() -> None:
    components = openapi()["components"]["schemas"]
    found = [p for body in REQUEST_BODIES for p in unbounded(components[body], components, body)]
    assert found == []


def test_a_new_incident_may_be_for_the_1402_line() -> None:
    service = openapi()["components"]["schemas"]["NewIncident"]["properties"]["service"]
    assert service["enum"] == ["102", "112", "1402"]
