"""The PMTiles v3 header reader (pure) and check-config's refusals of ``[http] pmtiles``: a missing or
unreadable file, not PMTiles v3, vector tiles, and a tile URL given as well."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gateway import check_config
from gateway.protocols.pmtiles import PmtilesError, raster_problem, read_header
from tests.core.test_config import RAW, problems
from tests.pmtiles_files import ALMATY, archive, tile_id


def test_the_header_says_type_zooms_and_where_the_parts_are() -> None:
    head = read_header(archive(max_zoom=12)[:127])
    assert (head.tile_type, head.raster, head.min_zoom, head.max_zoom) == ("png", True, 0, 12)
    assert (head.internal_compression, head.tile_compression, head.root_offset) == ("none", "none", 127)
    assert head.bounds == (-180.0, -85.0, 180.0, 85.0) and head.center == (12, ALMATY[1], ALMATY[0])
    assert raster_problem(head) is None
    assert read_header(archive(tile_type=4)[:127]).tile_type == "webp"


@pytest.mark.parametrize(("head", "said"), [
    (b"PMTiles\x03", "8 bytes, a PMTiles v3 header is 127"),
    (b"\x89PNG\r\n\x1a\n" + bytes(119), "not a PMTiles archive"),
    (archive(version=2)[:127], "byte 7 (version) is 2, expected 3"),
    (archive(tile_type=9)[:127], "byte 99 (tile type) is 9"),
])
def test_what_is_not_a_pmtiles_v3_header_is_refused_saying_where(head: bytes, said: str) -> None:
    with pytest.raises(PmtilesError, match=said.replace("(", r"\(").replace(")", r"\)")):
        read_header(head)


def test_vector_tiles_need_a_style_the_console_does_not_have() -> None:
    assert "vector PMTiles need a style" in str(raster_problem(read_header(archive(tile_type=1)[:127])))
    assert "tile type 'unknown'" in str(raster_problem(read_header(archive(tile_type=0)[:127])))


def test_tile_ids_run_along_the_hilbert_curve_level_after_level() -> None:
    assert [tile_id(0, 0, 0), tile_id(1, 0, 0), tile_id(1, 0, 1), tile_id(1, 1, 1), tile_id(1, 1, 0)] == [0, 1, 2, 3, 4]
    assert tile_id(2, 0, 0) == 5  # the spec's examples


def _with(path: Path | str, **http: str) -> object:
    return lambda raw: raw["http"].update(pmtiles=str(path), **http)


def test_check_config_refuses_what_the_console_cannot_draw(tmp_path: Path) -> None:
    vector, old, text = tmp_path / "v.pmtiles", tmp_path / "v2.pmtiles", tmp_path / "t.pmtiles"
    vector.write_bytes(archive(tile_type=1))
    old.write_bytes(archive(version=2))
    text.write_text("not tiles")
    missing = problems(_with(tmp_path / "nope.pmtiles"))
    assert any("http.pmtiles: cannot read" in p and "nope.pmtiles" in p for p in missing)
    assert any("http.pmtiles: cannot read" in p for p in problems(_with(tmp_path)))  # a directory
    assert any("http.pmtiles" in p and "vector PMTiles need a style: give a raster PMTiles (png/jpeg/webp) or a "
               "tile URL" in p for p in problems(_with(vector)))
    assert any("http.pmtiles" in p and "only PMTiles v3" in p for p in problems(_with(old)))
    assert any("http.pmtiles" in p and "9 bytes" in p for p in problems(_with(text)))


def test_one_base_layer_a_tile_url_or_a_raster_pmtiles(tmp_path: Path) -> None:
    raster = tmp_path / "base.pmtiles"
    raster.write_bytes(archive())
    both = problems(_with(raster, tile_url="https://tiles.centre.kz/{z}/{x}/{y}.png"))
    assert both == ["test.toml: http: give tile_url or pmtiles, not both (the map has one base layer)"]
    raw = copy.deepcopy(RAW)
    raw["http"]["pmtiles"] = str(raster)
    assert check_config.parse(raw, "test.toml").http.pmtiles == str(raster)
