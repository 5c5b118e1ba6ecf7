"""AsyncStore.directory_and_related: the caller's directory entry and the incidents related to the call,
counting that entry as a location, in one trip to the store's thread; the live incident is left alone."""

from __future__ import annotations

from pathlib import Path

from gateway.incident.records import Location
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.protocols import location
from tests.core.test_store import incident

HOME = Location(source="directory", shape="circle", lat=43.2381, lon=76.9456, radius_m=30)


async def test_the_directory_place_finds_incidents_there(tmp_path: Path) -> None:
    sync = SqliteStore(tmp_path / "s.sqlite3", synchronous="OFF")
    sync.create(incident("neighbour", "+77019999999", 950.0, where=(43.2382, 76.9457)))
    sync.create(incident("elsewhere", "+77018888888", 950.0, where=(43.30, 76.90)))
    sync.directory_put([("+77272123456", HOME)])
    store = AsyncStore(sync)
    landline = incident("new", "+77272123456", 1000.0)  # no location of its own
    entry, links = await store.directory_and_related(landline, 500, 50, location.best)
    assert entry == HOME
    assert links == [("neighbour", "same_address")]
    assert landline.locations == [] and landline.best_location is None  # the caller adds it, in Trio
    mobile = incident("other", "+77011111111", 1000.0)  # not in the directory, no location
    assert await store.directory_and_related(mobile, 500, 50, location.best) == (None, [])
    sync.close()
