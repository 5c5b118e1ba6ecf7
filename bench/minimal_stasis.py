"""A throwaway minimal Stasis application: the bench's yardstick for what Stasis itself costs.

It registers the gateway's app name and continues every caller straight into ``ecgw-deliver``
(positions in turn), over the same keep-alive REST client and websocket reader as the gateway,
with no store, no answer, no subscription, no queue. Never a product: a caller here gets no
incident. Prints ``ready`` once the app is registered.

With ``--ops`` it also does to each caller what the gateway must do to Asterisk for every call, and
nothing else: answer it (IVR, hold and silence prompts need an answered channel), subscribe to it (its
Dial's progress and its end come after it left Stasis) and take the gateway's event types. The difference
from the plain app is what those operations cost Asterisk; the rest of the gateway's difference is its own.

Run: `python bench/minimal_stasis.py CONFIG.toml [--ops]` (the bench starts and stops it).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import settings as config  # noqa: E402
from gateway.asterisk import ari as ari_driver  # noqa: E402
from gateway.protocols import ari_events as ev  # noqa: E402

DELIVER_CONTEXT = "ecgw-deliver"


async def serve(cfg: config.GatewayConfig, ops: bool) -> None:
    positions = itertools.cycle([p.name for p in cfg.dispatch.positions])
    async with ari_driver.connect(cfg.asterisk) as ari, trio.open_nursery() as nursery:
        await ari.filter_events(sorted(ev.KNOWN) if ops else ["StasisStart"])
        print("ready", flush=True)
        async for event in ari.events():
            if isinstance(event, ev.StasisStart) and event.args[:1] in (["caller"], ["redial"]):
                step = deliver(ari, event.channel.id, next(positions), ops and event.args[:1] == ["caller"])
                nursery.start_soon(ari_driver.quietly, step)


async def deliver(ari: ari_driver.Ari, channel_id: str, position: str, ops: bool) -> None:
    if ops:
        await ari.answer(channel_id)
        await ari.subscribe(channel_id)
    await ari.continue_in_dialplan(channel_id, DELIVER_CONTEXT, position)


if __name__ == "__main__":
    trio.run(serve, config.load(Path(sys.argv[1])), sys.argv[2:] == ["--ops"])
