"""What a WAV file's header says (pure): format, rate, and how long the audio lasts.

Enough RIFF to index the call recordings Asterisk writes (wav49: GSM 06.10 in WAV, 65-byte blocks of
320 samples; plain PCM also works). The duration comes from the ``fact`` chunk's sample count when
there is one, else from the data size; a data size the header does not know yet (a file still being
written, or one Asterisk never closed) is taken from the bytes actually present.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

GSM610 = 0x31
PCM = 0x01


class WavError(ValueError):
    """The bytes are not a WAV file we can read (says what is wrong and where)."""


@dataclass(frozen=True)
class WavInfo:
    format_tag: int
    channels: int
    rate: int
    bytes_per_s: int
    block_align: int
    samples_per_block: int  # 0 when the format does not say (PCM: one sample per block)
    data_bytes: int
    fact_samples: int | None

    @property
    def duration_s(self) -> float:
        if self.fact_samples is not None and self.rate:
            return self.fact_samples / self.rate
        if self.samples_per_block and self.block_align and self.rate:
            return self.data_bytes // self.block_align * self.samples_per_block / self.rate
        return self.data_bytes / self.bytes_per_s if self.bytes_per_s else 0.0

    @property
    def codec(self) -> str:
        return {GSM610: "gsm", PCM: "pcm"}.get(self.format_tag, f"0x{self.format_tag:04x}")


def read_header(head: bytes, file_size: int) -> WavInfo:
    """Parse the chunks in ``head`` (the file's first bytes; 4 KiB is plenty) of a file of ``file_size``
    bytes. Raises WavError."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file (bytes 0-11)")
    fmt: tuple[int, ...] | None = None
    samples_per_block, fact, at = 0, None, 12
    while at + 8 <= len(head):
        cid, size = head[at:at + 4], struct.unpack_from("<I", head, at + 4)[0]
        body = at + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise WavError(f"fmt chunk at byte {at} is {size} bytes, expected at least 16")
            fmt = struct.unpack_from("<HHIIH", head, body)
            if size >= 20 and body + 20 <= len(head):
                samples_per_block = struct.unpack_from("<H", head, body + 18)[0]
        elif cid == b"fact" and size >= 4 and body + 4 <= len(head):
            fact = struct.unpack_from("<I", head, body)[0]
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"data chunk at byte {at} before any fmt chunk")
            present = max(0, file_size - body)
            data = size if 0 < size <= present else present
            tag, channels, rate, per_s, align = fmt
            return WavInfo(tag, channels, rate, per_s, align, samples_per_block, data,
                           fact if fact and size == data else None)
        at = body + size + (size & 1)
    raise WavError("no data chunk in the file's first bytes")
