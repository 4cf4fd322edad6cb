"""Small text outputs: aligned tables for the terminal and CSV files written atomically."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError
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


# files a data set is made of: a CSV of predictions written over one of them would lose the set
DATA_SET_FILES = ("data.json", "classifications.csv", "labels.csv", "survey.yaml", "simulation.json")


def check_csv_output(out: str | os.PathLike, source: str | os.PathLike) -> None:
    """Refuse, before any work, a CSV destination that is a folder, the input itself, a data set's own
    file, or an existing image or model file: predictions never overwrite what they were made from."""
    path = Path(out)
    if path.is_dir():
        raise BadInputError(f"cannot write {out}: it is a folder; give a file name such as {Path(out) / 'scores.csv'}")
    if not path.exists():
        return
    resolved = path.resolve()
    if resolved == Path(source).resolve() or path.name in DATA_SET_FILES or \
            path.suffix.lower() in (".fits", ".fit", ".fz", ".gz", ".json", ".safetensors", ".h5", ".png", ".tif", ".tiff"):
        raise BadInputError(f"-o {out}: that file is input data, not an earlier output of predictions; "
                            "write the predictions to a file of their own (e.g. scores.csv)")
