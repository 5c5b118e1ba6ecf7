"""One SMPP connection to the SMSC: opening it with bind_transceiver, and the state it carries.

Theory of operation: ``bind_transceiver`` connects, sends the bind and reads until the
answer to that bind arrives, within ``connect_timeout_s``; every way this can go wrong (no
route, a refusal, a peer that does not speak SMPP) is a ChannelError naming the SMSC, and
the half-open socket is closed before it is raised. The ``Link`` it returns is what the
channel's reader and keep-alive tasks share: the decoder with any bytes already read past
the bind response, the write lock that keeps PDUs whole, the submit_sm awaiting an answer
by sequence number, and the cancel scope that ends both tasks once the link is declared dead.
"""

from __future__ import annotations

import trio

from channels.smpp_receipts import Batch
from gateway.errors import ChannelError
from gateway.protocols import smpp_pdu as P
from gateway.settings.channels import SmppConfig


class Link:
    """One bound TCP connection."""

    def __init__(self, stream: trio.SocketStream, decoder: P.Decoder) -> None:
        self.stream = stream
        self.decoder = decoder
        self.lock = trio.Lock()
        self.pending: dict[int, tuple[Batch, int, int, float]] = {}  # seq -> batch, message, part, sent at
        self.dead = ""
        self.scope = trio.CancelScope()
        self.last_rx = trio.current_time()
        self.enquire_sent: float | None = None
        self.unbound = trio.Event()
        self.nursery: trio.Nursery | None = None  # the link's tasks; inbound texts are handled there

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)


async def bind_transceiver(cfg: SmppConfig, sequence: int) -> Link:
    """Connect and bind_transceiver with ``sequence``. Raises ChannelError."""
    bind = P.BindTransceiver(sequence=sequence, system_id=cfg.system_id, password=cfg.password,
                             system_type=cfg.system_type)
    where = f"SMSC {cfg.host}:{cfg.port}"
    try:
        with trio.fail_after(cfg.connect_timeout_s):
            stream = await trio.open_tcp_stream(cfg.host, cfg.port)
            try:
                decoder = P.Decoder()
                await stream.send_all(P.encode(bind))
                while (resp := decoder.next_pdu()) is None or resp.sequence != bind.sequence:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise ChannelError(f"{where} closed the connection during bind")
                    decoder.receive_data(data)
                if resp.status:
                    raise ChannelError(f"{where} refused the bind as {cfg.system_id!r}: "
                                       f"{P.status_name(resp.status)}")
                if not isinstance(resp, P.BindTransceiverResp):
                    raise ChannelError(f"{where} answered bind_transceiver with {type(resp).__name__}")
            except BaseException:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                raise
    except trio.TooSlowError as exc:
        raise ChannelError(f"{where}: no bind_transceiver_resp within {cfg.connect_timeout_s} s") from exc
    except (OSError, trio.BrokenResourceError) as exc:
        raise ChannelError(f"{where}: cannot connect: {exc}") from exc
    except P.PduError as exc:
        raise ChannelError(f"{where} answered the bind outside SMPP: {exc}") from exc
    return Link(stream, decoder)
