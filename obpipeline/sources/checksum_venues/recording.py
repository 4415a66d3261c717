"""A venue recording read whole: its book messages per instrument, accounting and quarantine.

``read_recording`` detects the venue from the connection header (or the messages), parses every
received line with the venue's adapter and groups book messages by the venue's symbol. A line
that cannot be used is quarantined with file, line and reason; nothing raises on bad input.
Every received line is counted once: lines = blank + connections + sent + ignored + book lines
+ quarantined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from obpipeline.errors import CaptureError
from obpipeline.sources.checksum_venues import bitget, kraken, okx
from obpipeline.sources.checksum_venues.lines import (
    BadRecord,
    LineCounts,
    open_bytes,
    read_lines,
    record,
)
from obpipeline.sources.checksum_venues.message import BookMessage

ADAPTERS: dict[str, ModuleType] = {m.VENUE: m for m in (okx, bitget, kraken)}
VENUES: tuple[str, ...] = tuple(ADAPTERS)
SNIFF_LINES = 200


@dataclass(frozen=True, slots=True)
class Located:
    """A book message with where it came from."""

    message: BookMessage
    file: int  # index into Recording.files
    line: int
    ts_local: int


@dataclass
class Recording:
    venue: str
    files: list[Path]
    messages: dict[str, list[Located]] = field(default_factory=dict)  # by venue symbol
    counts: LineCounts = field(default_factory=LineCounts)
    ignored: int = 0  # well-formed lines that are not book messages (events, other channels)
    book_lines: int = 0
    quarantine: list[dict] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.messages)

    def select(self, symbol: str | None) -> str:
        """The one instrument to replay: ``symbol`` (the venue's spelling) or the only one."""
        if symbol is not None:
            if symbol not in self.messages:
                raise CaptureError(
                    f"symbol {symbol!r} has no {self.venue} book messages in "
                    f"{', '.join(map(str, self.files))}; present: {', '.join(self.symbols) or 'none'}"
                )
            return symbol
        if len(self.messages) == 1:
            return self.symbols[0]
        if not self.messages:
            raise CaptureError(
                f"no {self.venue} book messages in {', '.join(map(str, self.files))}"
            )
        raise CaptureError(
            f"{len(self.messages)} instruments in this {self.venue} recording; choose one with "
            f"--symbol: {', '.join(self.symbols)}"
        )

    def accounting(self) -> dict[str, int]:
        c = self.counts
        return {
            "lines": c.lines,
            "blank_lines": c.blank_lines,
            "connection_lines": c.connections,
            "sent_lines": c.sent,
            "ignored_other_streams": self.ignored,
            "book_lines": self.book_lines,
            "quarantined": len(self.quarantine),
        }


def detect_venue(path: Path) -> str | None:
    """The checksum venue of a recording (connection header or message shape), else None."""
    try:
        for i, line in enumerate(open_bytes(path)):
            if i >= SNIFF_LINES:
                break
            for venue, adapter in ADAPTERS.items():
                if b" <-> " in line and adapter.URL_MARK in line:
                    return venue
                if all(mark in line for mark in adapter.SNIFF):
                    return venue
    except (OSError, EOFError):
        return None
    return None


def read_recording(files: Sequence[Path], venue: str | None = None) -> Recording:
    """Every book message of ``files`` (one venue, in time order), grouped by instrument."""
    files = [Path(f) for f in files]
    if venue is None:
        found = {detect_venue(f) for f in files}
        if None in found or len(found) != 1:
            raise CaptureError(
                "cannot tell the venue of "
                + ", ".join(map(str, files))
                + f"; give --venue ({'|'.join(VENUES)})"
            )
        venue = found.pop()
    if venue not in ADAPTERS:
        raise CaptureError(f"unknown checksum venue {venue!r}; known: {', '.join(VENUES)}")
    parse = ADAPTERS[venue].parse
    rec = Recording(venue, files)
    for index, path in enumerate(files):
        for line in read_lines(path, rec.counts, rec.quarantine):
            try:
                messages = parse(line.value)
            except BadRecord as e:
                rec.quarantine.append(record(path, line.number, str(e), line.raw))
                continue
            if messages is None:
                rec.ignored += 1
                continue
            rec.book_lines += 1
            for m in messages:
                rec.messages.setdefault(m.symbol, []).append(
                    Located(m, index, line.number, line.ts_local)
                )
    return rec
