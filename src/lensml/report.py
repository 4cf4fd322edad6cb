"""Messages for people: the CLI prints them; the Python API keeps them quiet unless asked.

Library code calls `report(...)` instead of `print`, so a notebook gets return values, not a
wall of text, while `lensml` on the command line tells what it did.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_quiet_depth = 0


def report(message: str) -> None:
    """Print one message (above any progress bar), unless inside `quiet()`."""
    if _quiet_depth == 0:
        from tqdm import tqdm

        tqdm.write(message)


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Silence `report` for the calls inside (no-op when `enabled` is false)."""
    global _quiet_depth
    _quiet_depth += int(enabled)
    try:
        yield
    finally:
        _quiet_depth -= int(enabled)
