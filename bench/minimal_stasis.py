"""A throwaway minimal Stasis application: the bench's yardstick for what Stasis itself costs.

It registers the gateway's app name and continues every caller straight into ``ecgw-deliver``
(positions in turn), over the same keep-alive REST client and websocket reader as the gateway,
with no store, no answer, no subscription, no queue. Never a product: a caller here gets no
incident. Prints ``ready`` once the app is registered.

Run: `python bench/minimal_stasis.py CONFIG.toml` (the bench starts and stops it).
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


async def serve(cfg: config.GatewayConfig) -> None:
    positions = itertools.cycle([p.name for p in cfg.dispatch.positions])
    async with ari_driver.connect(cfg.asterisk) as ari, trio.open_nursery() as nursery:
        await ari.filter_events(["StasisStart"])
        print("ready", flush=True)
        async for event in ari.events():
            if isinstance(event, ev.StasisStart) and event.args[:1] in (["caller"], ["redial"]):
                step = ari.continue_in_dialplan(event.channel.id, DELIVER_CONTEXT, next(positions))
                nursery.start_soon(ari_driver.quietly, step)


if __name__ == "__main__":
    trio.run(serve, config.load(Path(sys.argv[1])))
