"""Gates A0/A1 on checksum venues.

Per instrument-day: A0 counts gaps (OKX ``seqId`` breaks), unhandled gaps and crossed
books; A1 ``checksum`` fails on any mismatch and certifies, with the one-sided Clopper–Pearson
bound, the rate of messages whose top-of-book was wrong (every compared message is a trial:
the venue's CRC covers the top 25 / 10 levels after that message). The bound is graded like
the other partial-book references (``max_mismatch_rate_top``); ``insufficient`` when too few
messages were compared to certify it.
"""

from __future__ import annotations

from obpipeline.book import checksum as ck
from obpipeline.book.stream import ReplayResult
from obpipeline.fidelity import stats
from obpipeline.fidelity.config import Thresholds
from obpipeline.fidelity.gates import FAIL, INSUFFICIENT, PASS, GateResult


def checksum_results(
    result: ReplayResult, report: ck.ChecksumReport, thresholds: Thresholds | None = None
) -> list[GateResult]:
    """A0 (gaps, unhandled gaps, crossed) and A1 (checksum) for one replayed venue day."""
    t = thresholds or Thresholds()
    c = result.counters
    out = [
        _count("A0", "gaps", c.gaps, t.max_gaps),
        _count("A0", "unhandled_gaps", c.unsynced_at_end, t.max_unhandled_gaps),
        _count("A0", "crossed", c.crossed, t.max_crossed),
    ]
    n, bad = report.compared, report.mismatched
    upper = stats.clopper_pearson_upper(bad, n, t.confidence)
    first = report.mismatches[0] if report.mismatches else None
    status = FAIL if bad else (PASS if upper < t.max_mismatch_rate_top else INSUFFICIENT)
    out.append(
        GateResult(
            "A1",
            "checksum",
            status,
            value=bad / n if n else None,
            threshold=t.max_mismatch_rate_top,
            detail=f"{n - bad}/{n} {report.venue} checksums matched ({report.symbol})",
            first_failure_ns=first["ts_event"] if first else None,
            first_failure_msg_id=first["msg_id"] if first else None,
            metrics={
                "compared": float(n),
                "matched": float(n - bad),
                "mismatched": float(bad),
                "cp_upper": upper,
                "messages_with_checksum": float(report.messages_with_checksum),
            },
        )
    )
    return out


def _count(gate: str, check: str, value: int, limit: int) -> GateResult:
    return GateResult(gate, check, FAIL if value > limit else PASS, float(value), float(limit))
