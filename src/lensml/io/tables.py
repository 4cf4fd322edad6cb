"""Small text outputs: aligned tables for the terminal and CSV files written atomically."""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Sequence

from .atomic import write_text_atomic


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns: numbers right-aligned, text left-aligned (a long description then ends its
    line instead of pushing the columns before it across the screen); floats to 4 significant
    decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [bool(cells) and all(_NUMBER.fullmatch(r[i]) for r in cells) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(header), *(line(row) for row in cells)])


_NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?|nan|inf|-inf|-")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
