"""The ARI driver's reads of channel variables and of the channel list, against Asterisk's replies as ARI
sends them (a REST stand-in: status and body): a variable not set is "", a channel gone is ChannelGone, a
channel list that is not one is an AriError naming it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gateway.asterisk.ari import Ari, ChannelGone
from gateway.errors import AriError
from tests.rest_double import RestDouble


class Replies(RestDouble):
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body, self.paths = status, body, list[str]()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.paths.append(path)
        return self.status, self.body


def ari(replies: Replies) -> Ari:
    return Ari(SimpleNamespace(process_ws=None), "ecgw", replies)  # type: ignore[arg-type]


async def test_a_variable_is_read_whole() -> None:
    polygon = "shape=Polygon,crs=2d,pos_list=" + " ".join(["43.1 76.9"] * 400)
    replies = Replies(200, json.dumps({"value": polygon}).encode())
    assert await ari(replies).variable("c1", "ECGW_LOCATION") == polygon
    assert replies.paths == ["channels/c1/variable?variable=ECGW_LOCATION"]


async def test_a_variable_not_set_is_empty_and_a_channel_gone_says_so() -> None:
    assert await ari(Replies(404, b'{"message": "Provided variable was not found"}')).variable("c1", "X") == ""
    with pytest.raises(ChannelGone):
        await ari(Replies(404, b'{"message": "Channel not found"}')).variable("c1", "X")
    with pytest.raises(AriError):
        await ari(Replies(500, b"boom")).variable("c1", "X")
    assert await ari(Replies(200, b'{"value": null}')).variable("c1", "X") == ""


async def test_several_variables_one_request_each() -> None:
    replies = Replies(200, b'{"value": "v"}')
    assert await ari(replies).variables("c1", ["A", "B"]) == {"A": "v", "B": "v"}
    assert len(replies.paths) == 2


async def test_the_channel_list_is_decoded_and_a_bad_one_refused() -> None:
    listed = [{"id": "c1", "name": "PJSIP/x", "channelvars": {"ECGW_ROLE": "caller"}, "unknown": [1, 2]}]
    [channel] = await ari(Replies(200, json.dumps(listed).encode())).channels()
    assert (channel.id, channel.var("ECGW_ROLE")) == ("c1", "caller")
    assert await ari(Replies(200, b"")).channels() == []
    for body in (b'{"id": "c1"}', b"[{]", b'[{"name": "no id"}]'):
        with pytest.raises(AriError, match="channel"):
            await ari(Replies(200, body)).channels()
