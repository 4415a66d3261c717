"""Shared test helpers: where the real captures live, and a small Binance capture writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BINANCE = SHARED_DATA / "binance"

# Day-1 file → its continuation across UTC midnight (no new snapshot in the second file).
CONTINUATIONS = [
    ("usdm/btcusdt_20230404.dat.gz", "usdm/btcusdt_20230405.dat.gz"),
    ("usdm/btcusdt_20240718.gz", "usdm/btcusdt_20240719.gz"),
    ("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"),
    ("cm/btcusd_perp_20240808.gz", "cm/btcusd_perp_20240809.gz"),
]
STANDALONE = ["usdm/btcusdt_20240808.gz"]


def require_binance_data() -> Path:
    if not BINANCE.is_dir():
        pytest.skip(
            f"real Binance captures not found at {BINANCE} (../shared/data beside the repo)"
        )
    return BINANCE


class FuturesStream:
    """Builds a USD-M capture line by line: diffs chained by pu, REST snapshots, bookTickers."""

    def __init__(
        self, symbol: str = "BTCUSDT", start_u: int = 1000, t0_ms: int = 1_720_000_000_000
    ):
        self.symbol = symbol
        self.u = start_u
        self.t_ms = t0_ms
        self.lines: list[str] = []

    def _local(self) -> int:
        return self.t_ms * 1_000_000 + 123

    def diff(
        self, bids=(), asks=(), n_ids: int = 3, pu: int | None = None, emit: bool = True
    ) -> dict:
        """Advance the exchange by one message; ``emit=False`` loses it (a gap on the wire)."""
        self.t_ms += 5
        first, last = self.u + 1, self.u + n_ids
        data = {
            "e": "depthUpdate",
            "E": self.t_ms,
            "T": self.t_ms - 1,
            "s": self.symbol,
            "U": first,
            "u": last,
            "pu": self.u if pu is None else pu,
            "b": [[p, q] for p, q in bids],
            "a": [[p, q] for p, q in asks],
        }
        self.u = last
        if emit:
            self.raw(json.dumps({"stream": f"{self.symbol.lower()}@depth@0ms", "data": data}))
        return data

    def snapshot(self, bids, asks, last_update_id: int | None = None) -> None:
        self.t_ms += 1
        body = {
            "lastUpdateId": self.u if last_update_id is None else last_update_id,
            "E": self.t_ms,
            "T": self.t_ms,
            "bids": [[p, q] for p, q in bids],
            "asks": [[p, q] for p, q in asks],
        }
        self.raw(json.dumps(body))

    def book_ticker(self, bid, bid_size, ask, ask_size, u: int | None = None) -> None:
        data = {
            "e": "bookTicker",
            "u": self.u if u is None else u,
            "s": self.symbol,
            "b": bid,
            "B": bid_size,
            "a": ask,
            "A": ask_size,
            "T": self.t_ms,
            "E": self.t_ms,
        }
        self.raw(json.dumps({"stream": f"{self.symbol.lower()}@bookTicker", "data": data}))

    def raw(self, text: str) -> None:
        self.lines.append(f"{self._local()} {text}")

    def write(self, path: Path) -> Path:
        import gzip

        path.write_bytes(gzip.compress(("\n".join(self.lines) + "\n").encode()))
        return path
