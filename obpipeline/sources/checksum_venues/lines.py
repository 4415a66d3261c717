"""Recording lines → (line number, receive time, JSON value), shared by the checksum venues.

Two line formats are read: cryptofeed's raw recorder (``<url> <-> <ts>`` connection headers,
``<url> <- <ts>: <json>`` for what the client sent, ``<ts>: <json>`` for each message received,
``<ts>`` in seconds as a decimal string) and the Binance captures' ``<ts_ns> <json>``. Receive
times are converted from the decimal string exactly (no float), so they order like the file.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# "<seconds>.<fraction>: " (cryptofeed) or "<nanoseconds> " (Binance captures)
_RECEIVED = re.compile(rb"(\d{1,12})(?:\.(\d{1,18}))?: ")
_RECEIVED_NS = re.compile(rb"(\d{10,20}) ")
_HEADER = re.compile(rb"\S+ <-> \d+(?:\.\d+)?\s*$")
_SENT = re.compile(rb"\S+ <- \d+(?:\.\d+)?: ")


class BadRecord(ValueError):
    """A line that cannot be used; the message is the quarantine reason."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line number in its file
    ts_local: int  # receive time, ns since the epoch
    value: object  # the parsed JSON
    raw: bytes


@dataclass
class LineCounts:
    lines: int = 0
    blank_lines: int = 0
    connections: int = 0  # ``<url> <-> <ts>`` headers
    sent: int = 0  # what the client sent (subscriptions)


def seconds_to_ns(whole: bytes, fraction: bytes | None) -> int:
    """``<whole>.<fraction>`` seconds → int ns, truncating digits beyond the nanosecond."""
    frac = (fraction or b"")[:9].ljust(9, b"0")
    return int(whole) * 1_000_000_000 + int(frac)


def open_bytes(path: Path) -> Iterator[bytes]:
    """The lines of a plain or gzip file (detected from its magic bytes)."""
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        yield from f


def read_lines(path: Path, counts: LineCounts, quarantine: list[dict]) -> Iterator[Line]:
    """Every received message of ``path``; unusable lines go to ``quarantine`` with file+line."""
    for number, raw in enumerate(open_bytes(path), start=1):
        counts.lines += 1
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            counts.blank_lines += 1
            continue
        m = _RECEIVED.match(line)
        if m is not None:
            ts, body = seconds_to_ns(m.group(1), m.group(2)), line[m.end() :]
        elif (m := _RECEIVED_NS.match(line)) is not None:
            ts, body = int(m.group(1)), line[m.end() :]
        elif _HEADER.match(line):
            counts.connections += 1
            continue
        elif _SENT.match(line):
            counts.sent += 1
            continue
        else:
            quarantine.append(
                record(path, number, "no receive time at the start of the line", line)
            )
            continue
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as e:
            reason = f"invalid JSON: {str(e)[:120]}"
            quarantine.append(record(path, number, reason, line))
            continue
        yield Line(number, ts, value, line)


def record(path: Path, number: int, reason: str, raw: bytes) -> dict:
    """One quarantine row (schemas.quarantine): the line verbatim with where and why."""
    return {
        "file": str(path),
        "line": number,
        "reason": reason,
        "record": raw[:4096].decode("utf-8", "replace"),
    }
