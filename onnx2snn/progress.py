"""How library code reports progress without printing: it calls a callback that the caller renders (the
CLI: stage lines and progress bars on stderr).

    progress(message)                          a stage begins (one line)
    progress(message, done, total, detail)     step ``done`` of ``total`` of a long stage with the label
                                               ``message``; ``detail`` (optional) e.g. the current loss

A stage that reports steps reports about ``STEPS`` of them, whatever its length, and always its last.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[..., None]
STEPS = 100


def silent(*args, **kwargs) -> None:
    """The callback of a caller that wants no progress."""


def steps_only(progress: Progress | None) -> Progress:
    """``progress`` without the stage lines: for a stage run inside another (a search's conversions)."""
    if progress is None:
        return silent
    return lambda message, done=None, total=None, detail=None: (
        None if done is None else progress(message, done, total, detail))


def report_interval(total: int) -> int:
    """Steps between two reports of a stage of ``total`` steps (``STEPS`` reports in all)."""
    return max(1, total // STEPS)
