"""The OpenAPI 3.1 document, its schemas generated from the same msgspec Structs the routes use,
so the API and its description cannot drift apart."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.incident.recording_index import Hold
from gateway.incident.records import Incident, IncidentSummary
from gateway.intake.recordings import IncidentRecordings
from gateway.scenario.machine import Run
from gateway.units.board import Proposals
from gateway.units.model import Unit
from gateway.warning.audience import Audience, AudienceQuery
from gateway.warning.recipients import Recipient
from gateway.warning.records import AlertRecord, Progress
from gateway.warning.workflow import DraftSpec
from gateway.web.errors import ApiError
from gateway.web.health import Health
from gateway.web.recordings import HoldBody, RetentionReport
from gateway.web.scenario import CategoryBody, NewIncident, NoteBody, SceneBody, StatusBody, TextBody
from gateway.web.units import AssignBody
from gateway.web.units import StatusBody as UnitStatusBody
from gateway.web.warnings import ApproveBody, CancelBody

PATH_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
BODIES = [Incident, list[IncidentSummary], Health, ApiError, NewIncident, CategoryBody, StatusBody, TextBody,
          list[Run], Unit, list[Unit], UnitStatusBody, AssignBody, Proposals, DraftSpec, ApproveBody, CancelBody,
          AlertRecord, list[AlertRecord], Progress, Recipient, list[Recipient], NoteBody, SceneBody, AudienceQuery,
          Audience, IncidentRecordings, HoldBody, Hold, RetentionReport]
NAMES = ["incident", "summary", "health", "error", "new", "category", "status", "text", "runs", "unit", "units",
         "unit_status", "assign", "proposals", "draft", "approve", "cancel", "alert", "alerts", "progress",
         "recipient", "recipients", "note", "scene", "audience_query", "audience", "recordings", "hold_body", "hold",
         "retention"]
REF = [{"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}]


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 document whose schemas come from the msgspec records."""
    schemas, components = msgspec.json.schema_components(BODIES, ref_template="#/components/schemas/{name}")
    s = dict(zip(NAMES, schemas, strict=True))
    return {"openapi": "3.1.0", "info": {"title": "Emergency telephony gateway", "version": "1"},
            "paths": _incident_paths(s) | _response_paths(s) | _warning_paths(s) | _service_paths(s)
            | _recording_paths(s),
            "components": {"schemas": components}}


def openapi_route() -> Route:
    document = msgspec.json.encode(openapi())

    async def get_openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    return Route("/openapi.json", get_openapi)


def _ok(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {media: {"schema": schema}}}}


def _not_found(s: dict[str, Any]) -> dict[str, Any]:
    return {"404": {"description": "No such incident", "content": {"application/json": {"schema": s["error"]}}}}


def _post(s: dict[str, Any], summary: str, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": PATH_ID,
                     "requestBody": {"content": {"application/json": {"schema": body}}},
                     "responses": _ok(reply) | _not_found(s)}}


def _incident_paths(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "/incidents": {"get": {"summary": "Recent incidents, newest first", "parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "since", "in": "query", "schema": {"type": "number"}}], "responses": _ok(s["summary"])},
            "post": {"summary": "A dispatcher opens an incident (runs its category's scenario)",
                     "requestBody": {"content": {"application/json": {"schema": s["new"]}}},
                     "responses": {"201": {"description": "Created",
                                           "content": {"application/json": {"schema": s["incident"]}}}}}},
        "/incidents/{id}": {"get": {"summary": "One incident with its timeline", "parameters": PATH_ID,
                                    "responses": _ok(s["incident"]) | _not_found(s)}},
        "/events": {"get": {"summary": "Server-sent events: one IncidentSummary per new or changed incident",
                            "responses": _ok({"type": "string"}, "text/event-stream")}},
    }


def _response_paths(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "/incidents/{id}/category": _post(s, "Change the category: the scenario switches", s["category"],
                                          s["incident"]),
        "/incidents/{id}/status": _post(s, "Move the response status forward", s["status"], s["incident"]),
        "/incidents/{id}/reply": _post(s, "Answer the person who reported by Telegram or SMS", s["text"],
                                       s["incident"]),
        "/incidents/{id}/notes": _post(s, "A dispatcher's note on the timeline", s["note"], s["incident"]),
        "/incidents/{id}/scene": _post(s, "The incident's location: copy a caller's, or correct it by hand",
                                       s["scene"], s["incident"]),
        "/incidents/{id}/escalation": {"get": {"summary": "The incident's scenario runs", "parameters": PATH_ID,
                                               "responses": _ok(s["runs"])}},
        "/incidents/{id}/assign": _post(s, "Assign a free unit", s["assign"], s["unit"]),
        "/incidents/{id}/proposals": {"get": {"summary": "The nearest free units", "parameters": PATH_ID,
                                              "responses": _ok(s["proposals"])}},
        "/units": {"get": {"summary": "Every unit with status and position", "responses": _ok(s["units"])}},
        "/units/{id}/status": _post(s, "A unit's status or position", s["unit_status"], s["unit"]),
        "/acks/{token}": {"post": {"summary": "Acknowledge a notification from the console",
                                   "responses": _ok({"type": "object"})}},
    }


def _warning_paths(s: dict[str, Any]) -> dict[str, Any]:
    """The officers' workflow (civil-defence role; 403 before anything else) and the recipients."""
    return {
        "/alerts": {"get": {"summary": "Recent alerts", "responses": _ok(s["alerts"])},
                    "post": {"summary": "Draft an alert", "requestBody": {"content": {"application/json": {
                        "schema": s["draft"]}}}, "responses": _ok(s["alert"])}},
        "/warnings/audience": {"post": {
            "summary": "Who an area being composed reaches: zones, sirens, boards, recipients per channel (a read; "
                       "400 names a bad shape by its index)",
            "requestBody": {"content": {"application/json": {"schema": s["audience_query"]}}},
            "responses": _ok(s["audience"])}},
        "/alerts/{id}/approve": _post(s, "A second officer approves (and sends)", s["approve"], s["alert"]),
        "/alerts/{id}/update": _post(s, "An Update superseding a sent alert", s["draft"], s["alert"]),
        "/alerts/{id}/cancel": _post(s, "Cancel (one officer: stopping must not wait)", s["cancel"], s["alert"]),
        "/alerts/{id}/status": {"get": {"summary": "Delivery progress", "parameters": PATH_ID,
                                        "responses": _ok(s["progress"]) | _not_found(s)}},
        "/recipients": {"get": {"summary": "Recipients by ref, paged", "parameters": [
            {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": 64}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": _ok(s["recipients"])},
            "post": {"summary": "Import a CSV (ref,name,phone,email,telegram,language,zones,channels)",
                     "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}},
                     "responses": _ok({"type": "object"})}},
        "/recipients/{ref}": {"put": {"summary": "Add or replace one recipient", "parameters": REF,
                                      "requestBody": {"content": {"application/json": {"schema": s["recipient"]}}},
                                      "responses": _ok(s["recipient"])}},
    }


def _service_paths(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "/health": {"get": {"summary": "Service health", "responses": _ok(s["health"])}},
        "/positions": {"get": {"summary": "Every dispatcher position and its state (free, ringing, busy)",
                               "responses": _ok({"type": "object", "additionalProperties": {"type": "string"}})}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": _ok({"type": "string"}, "text/plain")}},
        "/openapi.json": {"get": {"summary": "This document", "responses": _ok({"type": "object"})}},
    }


def _recording_paths(s: dict[str, Any]) -> dict[str, Any]:
    """Call recordings (dispatcher, supervisor or admin; every read audited) and legal holds (supervisor, admin)."""
    return {
        "/incidents/{id}/recordings": {"get": {"summary": "The incident's recordings, each file's state, its hold",
                                               "parameters": PATH_ID, "responses": _ok(s["recordings"])
                                               | _not_found(s)}},
        "/recordings/{id}": {"get": {"summary": "A recording's audio (wav49); Range answers 206",
                                     "parameters": PATH_ID,
                                     "responses": _ok({"type": "string", "format": "binary"}, "audio/wav")
                                     | _not_found(s)}},
        "/incidents/{id}/hold": _post(s, "Put the incident's recordings on legal hold (the purge keeps them)",
                                      s["hold_body"], s["hold"])
        | {"delete": {"summary": "Lift the legal hold", "parameters": PATH_ID,
                      "responses": {"204": {"description": "Lifted"}} | _not_found(s)}},
        "/recordings/retention": {"get": {"summary": "keep_days, the last purge's report, problems found",
                                          "responses": _ok(s["retention"])}},
    }
