"""The console's settings: the tile server (checked; the only other origin images may come from), HTTPS
files in pairs, and the people section's bounds."""

from __future__ import annotations

import copy
from typing import Any

from gateway import settings as config
from gateway.web.server import SecurityHeaders
from tests.core.test_config import RAW, problems


def test_a_tile_server_is_a_url_template_with_z_x_y() -> None:
    def tiles(url: str) -> Any:
        return lambda raw: raw["http"].update(tile_url=url)

    assert any("http.tile_url" in p for p in problems(tiles("ftp://tiles.kz/{z}/{x}/{y}.png")))
    assert any("http.tile_url" in p for p in problems(tiles("https://tiles.kz/map.png")))
    raw = copy.deepcopy(RAW)
    raw["http"]["tile_url"] = "https://tiles.centre.kz/osm/{z}/{x}/{y}.png"
    assert config.parse(raw).http.tile_url.endswith("{y}.png")
    assert any("http.certfile" in p for p in problems(lambda raw: raw["http"].update(certfile="/etc/c.pem")))
    assert any("people.lockout_after" in p for p in problems(lambda raw: raw.update(people={"lockout_after": 1})))


def test_images_may_come_from_the_tile_server_and_nowhere_else() -> None:
    def policy(headers: SecurityHeaders) -> str:
        return dict(headers.headers)[b"content-security-policy"].decode()

    assert "img-src 'self' data: blob:;" in policy(SecurityHeaders(None))
    allowed = policy(SecurityHeaders(None, images_from="https://tiles.centre.kz"))
    assert "img-src 'self' https://tiles.centre.kz data: blob:;" in allowed and "script-src 'self';" in allowed
