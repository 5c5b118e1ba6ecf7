"""SMSC stand-in: an SMPP 3.4 server on 127.0.0.1 for tests, drills and benchmarks.

This module is the stand-in as a separate process; the SMPP server itself (``Smsc``,
``open_smsc``: the wire protocol, records and fault knobs) is in ``sim.smsc_server``.

Separate process: ``python -m sim.smsc --port N --system-id ... --password ...`` prints one
JSON line with its address and its HTTP control API (``control_app``: counts, a destination's
records, fault knobs, ``POST /sim/mo`` for a handset's text) when ready; ``--stats FILE`` keeps a
JSON snapshot of the counts. ``smsc_process`` starts it from a Trio program and reads that line.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sim.smsc_server import Faults, Smsc, open_smsc


class MoRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A mobile-originated text for the control API; ``body_hex`` with ``data_coding`` sends raw octets,
    ``message_id`` sends a stored message again under its id (an SMSC that missed the answer)."""

    source: str
    destination: str = "112"
    text: str = ""
    data_coding: int | None = None
    body_hex: str | None = None
    message_id: str | None = None


@asynccontextmanager
async def smsc_process(*args: str, ready_timeout_s: float = 10.0) -> AsyncIterator[tuple[trio.Process, dict[str, Any]]]:
    """Run ``python -m sim.smsc --port 0 ARGS`` as a separate process; yield it and its ready line
    (``host``, ``port``); SIGTERM on exit (it then writes its final ``--stats``)."""
    command = [sys.executable, "-m", "sim.smsc", "--port", "0", *args]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE,
                                               cwd=Path(__file__).resolve().parent.parent)
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(ready_timeout_s):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError(f"sim.smsc exited before it was ready: {line!r}")
                line += chunk
        yield process, json.loads(line)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(5):
                    await process.wait()
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def _write_stats(smsc: Smsc, path: Path) -> None:
    while True:
        snapshot = dict(smsc.stats(), by_destination=dict(smsc.by_destination))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(path)
        await trio.sleep(1.0)


def control_app(smsc: Smsc) -> Starlette:
    """``GET /sim/counts``, ``GET /sim/destinations/{number}`` (count and records),
    ``POST /sim/faults`` (a ``Faults`` body), ``POST /sim/mo`` (a ``MoRequest``)."""

    def reply(body: object, status: int = 200) -> Response:
        return Response(msgspec.json.encode(body), status, media_type="application/json")

    async def counts(_: Request) -> Response:
        return reply(smsc.stats())

    async def destination(request: Request) -> Response:
        number = request.path_params["number"]
        return reply({"count": smsc.by_destination.get(number, 0), "records": smsc.records.get(number, [])})

    async def mo(request: Request) -> Response:
        try:
            req = msgspec.json.decode(await request.body(), type=MoRequest)
            body = bytes.fromhex(req.body_hex) if req.body_hex is not None else None
            statuses = await smsc.send_mo(req.source, req.destination, req.text, data_coding=req.data_coding,
                                          body=body, message_id=req.message_id)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            return reply({"error": str(exc)}, 400)
        except (LookupError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            return reply({"error": f"not delivered: {exc!r}"}, 503)
        return reply({"statuses": statuses})

    async def faults(request: Request) -> Response:
        try:
            smsc.apply(msgspec.json.decode(await request.body(), type=Faults))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return reply({"error": str(exc)}, 400)
        return reply({"ok": True})

    return Starlette(routes=[Route("/sim/counts", counts), Route("/sim/destinations/{number}", destination),
                             Route("/sim/faults", faults, methods=["POST"]), Route("/sim/mo", mo, methods=["POST"])])


async def _run(args: argparse.Namespace) -> None:
    from sim.http import run_server  # only the separate process serves the control API

    async with open_smsc(system_id=args.system_id, password=args.password, host=args.host, port=args.port,
                         receipt_delay_s=args.receipt_delay, keep_text=not args.no_text,
                         count_by_destination=not args.no_counts) as smsc:
        if args.throttle_above:
            smsc.throttle_above(args.throttle_above)
        smsc.refuse_bind = args.refuse_bind
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(run_server, control_app(smsc), args.host, args.control_port)
            host, port = smsc.address
            print(json.dumps({"host": host, "port": port, "system_id": args.system_id, "control": f"{bound[0]}/sim"}),
                  flush=True)
            if args.stats:
                nursery.start_soon(_write_stats, smsc, Path(args.stats))
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()
        if args.stats:
            Path(args.stats).write_text(json.dumps(dict(smsc.stats(), by_destination=dict(smsc.by_destination))))
        print(json.dumps(smsc.stats()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.smsc", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--system-id", default="warn")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--receipt-delay", type=float, default=0.05, help="seconds before a delivery receipt")
    parser.add_argument("--throttle-above", type=float, default=0.0, help="ESME_RTHROTTLED beyond this many/s")
    parser.add_argument("--no-text", action="store_true", help="do not keep message texts (bulk runs)")
    parser.add_argument("--no-counts", action="store_true", help="do not count per destination (bulk runs)")
    parser.add_argument("--refuse-bind", action="store_true", help="answer every bind with ESME_RBINDFAIL")
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control API port (0: a free one)")
    parser.add_argument("--stats", default="", help="keep a JSON snapshot of the counters in this file")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the stand-in listens on loopback only")
    trio.run(_run, args)


if __name__ == "__main__":
    main()
