"""The project's one vocabulary of expected failures.

A ``PipelineError`` is a problem with what a day was given (its input, its source, its starting
book), not a bug: the CLI prints its one-line message and exits 2, a Dagster step fails that day
only and goes on with the others. Anything that is not a ``PipelineError`` is a bug and keeps its
traceback. Catch ``PipelineError`` (or one subclass), never a hand-made tuple of classes.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every expected, per-day failure; the message names the file/day and says why."""


class CaptureError(PipelineError, ValueError):
    """Input that cannot be used as given (several symbols mixed in one stream, an unusable name,
    a checkpoint of another book, ...); the message says which and why, in one line."""


class CheckpointMismatch(CaptureError):
    """The checkpoint is not the book the replay expects (instrument, day, or no identity)."""


class SourceUnavailable(PipelineError, RuntimeError):
    """The configured source has nothing for this day (no file landed, ...)."""


class MissingStartBook(PipelineError, RuntimeError):
    """Day D cannot start: no D-1 checkpoint and no opening exchange snapshot of its own."""
