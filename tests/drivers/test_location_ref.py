"""Locations sent by reference: which URI a call names, and fetching it from a location server on
127.0.0.1 with every way that can go wrong (not allowed, 404, too big, too slow, not a PIDF-LO)."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from gateway.intake.location_ref import LocationFetcher, reference
from gateway.protocols.pidf import LocationError
from gateway.settings import LocationConfig
from tests.drills.test_real_locations import SHAPES, document, location_server


def test_the_reference_comes_from_asterisk_or_the_geolocation_header() -> None:
    assert reference('URI="https://lis.operator.kz/l/1"', "URI", "") == "https://lis.operator.kz/l/1"
    assert reference("", "", "<https://lis.operator.kz/l/2>;inserted-by=lis") == "https://lis.operator.kz/l/2"
    assert reference('shape="Point",crs="2d",pos="43.2 76.9"', "GML", "<cid:loc@caller>") == ""  # by value
    assert reference('URI="sips:loc@operator.kz"', "URI", "") == ""  # not something we can GET


async def test_fetching_is_bounded_and_every_failure_says_why() -> None:
    slow_body = document(SHAPES["point"][0])
    async with location_server({"/loc/ok": document(SHAPES["circle"][0], "A-GPS"), "/loc/big": "x" * 70_000,
                                "/loc/junk": "<not-pidf/>", "/loc/slow": slow_body}) as base:
        fetcher = LocationFetcher(LocationConfig(dereference=[base + "/loc/"], timeout_s=2, max_bytes=65536))
        [loc] = (await fetcher.fetch(f"{base}/loc/ok")).locations
        assert (loc.shape, loc.confidence) == ("circle", 67.0)
        refusals = (("/loc/none", "answered 404"), ("/loc/big", "over 65536 bytes"),
                    ("/loc/junk", "root element is 'not-pidf'"))
        for path, why in refusals:
            with pytest.raises(LocationError, match=why):
                await fetcher.fetch(base + path)
        with pytest.raises(LocationError, match="not under"):
            await fetcher.fetch("http://127.0.0.1:1/elsewhere")


async def test_a_silent_location_server_does_not_hold_the_call_up() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # accepts the connection, never answers

    async with trio.open_nursery() as nursery:
        listener = (await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1")))[0]
        port = listener.socket.getsockname()[1]
        fetcher = LocationFetcher(LocationConfig(dereference=[f"http://127.0.0.1:{port}/"], timeout_s=0.5))
        with trio.fail_after(5), pytest.raises(LocationError, match="did not answer within 0.5 s"):
            await fetcher.fetch(f"http://127.0.0.1:{port}/loc")
        nursery.cancel_scope.cancel()
