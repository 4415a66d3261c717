"""The one result type of every check (invariants, gates, CLI verify, report) and its words.

Two vocabularies, on purpose, each defined once here:

* ``Severity`` says how bad a *failed* check is: ``ERROR`` stops the day (its data is not written
  and nothing downstream runs), ``WARN`` is reported and alerted but never blocks. The words are
  Dagster's (``AssetCheckSeverity``), so a verdict maps onto a check evaluation without a table.
* ``Status`` is what one fidelity gate found on a day (the ``status`` column of
  ``fidelity_metrics``): ``pass``; ``fail`` (evidence of an error); ``insufficient`` (no error
  seen, but too few aligned records to certify the bound at 95 %: reported, never a failure);
  ``warn`` (a Gate C figure outside its range); ``skipped`` (nothing to check, e.g. no golden
  record of that kind). The words are stored data: they stay lowercase.

``STATUS_WORDS`` is the explanation the Dagster check descriptions and the report print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "ERROR"
    WARN = "WARN"


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient"
    WARN = "warn"
    SKIPPED = "skipped"


STATUS_WORDS: dict[Status, str] = {
    Status.PASS: "checked and within its bound",
    Status.FAIL: "evidence of an error (blocks the day when the gate blocks)",
    Status.INSUFFICIENT: "no error seen, but too few aligned records to certify the bound at "
    "95 % (a short capture cannot certify 0.01 %); never a failure",
    Status.WARN: "a realism figure outside its expected range (Gate C: never blocks)",
    Status.SKIPPED: "nothing to check on this day (e.g. no reference records of that kind)",
}


def status_legend() -> str:
    """One line per status word, for check descriptions and the report."""
    return "\n".join(f"- `{s.value}`: {text}" for s, text in STATUS_WORDS.items())


@dataclass
class Verdict:
    """One check's verdict on one day.

    ``metadata`` holds the evidence by name: numbers stay numbers (they plot across partitions
    in the Dagster UI), lists and dicts are samples. Readers look values up by name.
    """

    name: str
    passed: bool
    severity: Severity = Severity.ERROR
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        """A failed ERROR verdict stops the day: its data is not written, downstream does not run."""
        return not self.passed and self.severity == Severity.ERROR


def by_name(verdicts: list[Verdict], name: str) -> Verdict:
    """The verdict called ``name`` (a clear error when it is not there)."""
    for v in verdicts:
        if v.name == name:
            return v
    raise KeyError(f"no verdict named {name!r} among {[v.name for v in verdicts]}")
