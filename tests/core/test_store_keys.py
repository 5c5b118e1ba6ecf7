"""An update sets an incident's indexed columns only when they changed since its last durable write (SQLite
rewrites an index entry for every indexed column an UPDATE names); the rows stay right on both backends."""

from __future__ import annotations

from gateway.errors import StoreError
from gateway.incident.bus import Bus
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident, Location
from gateway.incident.store import AsyncStore, Statement, event
from tests.store_backends import Backend


class Recording(AsyncStore):
    """Keeps every batch of statements written; fails the writes it is told to."""

    fail_next = False

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.heads: list[str] = []

    async def _write(self, statements: list[Statement], urgent: bool = False) -> None:
        self.heads += [sql.split(" WHERE")[0] for sql, _ in statements if sql.startswith("UPDATE incidents")]
        if self.fail_next:
            self.fail_next = False
            raise StoreError("disk full")
        await super()._write(statements)


def incident(incident_id: str = "k1", number: str = "+77011234567", created: float = 1000.0) -> Incident:
    inc = Incident(id=incident_id, service="112", created_wall=created, channel_id="ch-1",
                   caller=Caller(raw_number=number, number=number, display_name="", withheld=False))
    inc.timeline.append(event("call_arrived"))
    return inc


async def test_indexed_columns_are_set_when_they_change_and_only_then(backend: Backend) -> None:
    store = Recording(backend.open())
    recorder = Recorder(store, Bus())
    held = Held(incident())
    await recorder.create(held)
    await recorder.record(held, "queued", state="queued")  # nothing indexed changed: narrow
    held.incident.locations.append(Location(source="pidf-lo", shape="point", lat=43.2381, lon=76.9456))
    held.incident.best_location = 0
    await recorder.record(held, "location_found")  # the place changed: wide
    await recorder.record(held, "ringing", state="ringing")  # narrow again
    store.fail_next = True
    held.incident.channel_id = "ch-2"  # a call-back leg becomes the incident's channel
    try:
        await recorder.record(held, "callback_connected")  # wide, and it fails
    except StoreError:
        pass
    await recorder.record(held, "answered", state="answered")  # still wide: the failed one never landed
    await recorder.record(held, "hung_up", state="closed")  # narrow
    narrow = "UPDATE incidents SET updated_wall=?, state=?, doc=?"
    assert [h == narrow for h in store.heads] == [True, False, True, False, False, True]
    sync = backend.open()
    got = sync.get("k1")
    assert got.state == "closed" and got.channel_id == "ch-2"
    assert [e.kind for e in got.timeline][-2:] == ["answered", "hung_up"]
    assert sync.by_channel("ch-2") is not None and sync.by_channel("ch-1") is None  # the index followed
    near = incident("k2", "+77010000000", 1100.0)
    near.locations.append(Location(source="pidf-lo", shape="point", lat=43.2381, lon=76.9457))
    near.best_location = 0
    assert dict(sync.related(near, 500, 50)) == {"k1": "same_address"}  # the place was indexed
