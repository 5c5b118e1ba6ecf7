"""HTTP routes of call recordings: an incident's list, listening and download (with Range), legal holds,
and the last purge's report.

A recording is a caller's voice: every read needs a dispatcher, supervisor or admin (a person's session,
a machine's bearer token, or the host's local key) and is written to the audit trail with who read it;
holds are for supervisors and admins and are timeline events of the incident.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated

import msgspec
import trio
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.intake.recordings import PurgeReport, Recordings
from gateway.protocols.text import repair
from gateway.web.auth import Auth
from gateway.web.errors import error, json_response, read_body, refusal

LISTENERS = ("dispatcher", "supervisor", "admin")
HOLDERS = ("supervisor", "admin")
RECORDING_ID = re.compile(r"^[0-9A-Za-z.-]{1,96}$")  # a call-back's: <incident id>-cb<leg>
MEDIA_TYPE = "audio/wav"  # wav49: GSM 06.10 (format tag 0x31) in a RIFF/WAVE file
PLAY_TIMEOUT_S = 60.0  # sox decodes an hour of GSM in well under a second; a stuck one must not hang the read


class HoldBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class RetentionReport(msgspec.Struct, kw_only=True):
    keep_days: int
    problems: list[str]
    files_without_incident: list[str]
    last_purge: PurgeReport | None = None


class RecordingRoutes:
    """HTTP translation only: what is kept, purged and held is ``intake.recordings``'s."""

    def __init__(self, recordings: Recordings, auth: Auth) -> None:
        self.recordings = recordings
        self.auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/incidents/{id}/recordings", self.list_recordings, methods=["GET"]),
            Route("/incidents/{id}/hold", self.set_hold, methods=["POST"]),
            Route("/incidents/{id}/hold", self.release_hold, methods=["DELETE"]),
            Route("/recordings/retention", self.retention, methods=["GET"]),
            Route("/recordings/{id}", self.get_recording, methods=["GET"]),
        ]

    async def list_recordings(self, request: Request) -> Response:
        if (denied := self.auth.reader(request, *LISTENERS)) is not None:
            return denied
        incident_id = request.path_params["id"]
        try:
            found = await self.recordings.of_incident(incident_id)
        except GatewayError as exc:
            return refusal(exc, "-", "recordings API")
        await self.auth.audit(request, "recordings_listed", incident_id)
        return json_response(found)

    async def get_recording(self, request: Request) -> Response:
        """The audio file; ``Range: bytes=...`` answers 206 with that part (players seek with it)."""
        if (denied := self.auth.reader(request, *LISTENERS)) is not None:
            return denied
        recording_id = request.path_params["id"]
        if not RECORDING_ID.match(recording_id):
            return error(f"no recording {recording_id[:80]!r}", 404)
        try:
            rec, path = await self.recordings.file(recording_id)
        except GatewayError as exc:
            return refusal(exc, "-", "recordings API")
        wanted = request.headers.get("range", "")
        await self.auth.audit(request, "recording_read", rec.id,
                              f"incident {rec.incident_id}" + (f"; {wanted[:100]}" if wanted else ""))
        if request.query_params.get("play") == "pcm":
            return await _playable(path)
        return FileResponse(path, media_type=MEDIA_TYPE, filename=f"{rec.id}.wav",
                            headers={"Cache-Control": "no-store"})

    async def set_hold(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *HOLDERS), Response):
            return who
        try:
            body = await read_body(request, HoldBody)
            hold = await self.recordings.hold(request.path_params["id"], who.name, repair(body.reason)[0])
        except GatewayError as exc:
            return refusal(exc, who.name, "legal hold")
        await self.auth.audit(request, "legal_hold_set", hold.incident_id, hold.reason)
        return json_response(hold)

    async def release_hold(self, request: Request) -> Response:
        if isinstance(who := self.auth.require(request, *HOLDERS), Response):
            return who
        incident_id = request.path_params["id"]
        try:
            await self.recordings.release(incident_id, who.name)
        except GatewayError as exc:
            return refusal(exc, who.name, "legal hold")
        await self.auth.audit(request, "legal_hold_released", incident_id)
        return Response(status_code=204)

    async def retention(self, request: Request) -> Response:
        if (denied := self.auth.reader(request, *HOLDERS)) is not None:
            return denied
        r = self.recordings
        return json_response(RetentionReport(keep_days=r.cfg.keep_days, problems=r.problems,
                                             files_without_incident=r.orphans, last_purge=r.last_report))


async def _playable(path: Path) -> Response:
    """The recording as 16-bit PCM WAV, which every browser plays (none plays GSM in WAV); the stored file,
    its checksum and the download stay as Asterisk wrote them. sox decodes it (a set-up package)."""
    sox = shutil.which("sox")
    if sox is None:
        return error("sox is not installed: download the recording instead", 503)
    with trio.move_on_after(PLAY_TIMEOUT_S):
        done = await trio.run_process([sox, "-q", str(path), "-t", "wav", "-e", "signed-integer", "-b", "16", "-"],
                                      capture_stdout=True, capture_stderr=True, check=False)
        if done.returncode == 0:
            return Response(done.stdout, media_type="audio/wav", headers={"Cache-Control": "no-store"})
        return error(f"the recording could not be decoded: {done.stderr.decode(errors='replace')[:200]}", 503)
    return error(f"decoding the recording took over {PLAY_TIMEOUT_S:.0f} s", 503)
