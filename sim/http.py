"""Serving a stand-in's HTTP API (Bot API, Twilio REST, an SMSC's control API) on Hypercorn's Trio worker.

The stand-ins are servers of their own, not parts of the gateway: they do not share its HTTP layer.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


async def run_server(app: Any, host: str, port: int,
                     *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; ``started()`` reports the bound addresses once listening."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
