"""Identifiers: dataset ids (UUIDv7) and the canonical form of ids given by users."""

from __future__ import annotations

import os
import threading
import time
import uuid

from heimdall_synth.kernel.config import ConfigError

_uuid7_lock = threading.Lock()
_uuid7_last = (0, 0)  # (unix ms, 12-bit counter) of the last id made by this process


def new_dataset_id() -> uuid.UUID:
    """A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits.

    The 12 bits after the timestamp are random, but ids made by this process are strictly
    increasing (within one millisecond the 12 bits count up), so the first 8 bytes, which prefix
    every recording id of the dataset, never repeat within a process.
    """
    global _uuid7_last
    rand = int.from_bytes(os.urandom(10), "big")
    with _uuid7_lock:
        ms, counter = time.time_ns() // 1_000_000, (rand >> 62) & 0xFFF
        last_ms, last_counter = _uuid7_last
        if ms <= last_ms:
            ms, counter = (last_ms, last_counter + 1) if last_counter < 0xFFF else (last_ms + 1, 0)
        _uuid7_last = (ms, counter)
    value = ((ms & (2**48 - 1)) << 80 | 0x7 << 76 | counter << 64
             | 0b10 << 62 | rand & (2**62 - 1))
    return uuid.UUID(int=value)


def uuid_of(value, field: str) -> str:
    """A job or dataset id in canonical form; ConfigError naming the field otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigError(field, f"is not a valid UUID: {value!r}") from None
