"""Trained models that come with lensml: `-m pretrained:NAME` in every command, `lensml models --pretrained`.

Each is an ordinary lensml model file in this folder (safetensors: loading runs no code), listed in
`catalogue.json` with what it was trained on, its scores on independent data and the recipe that
made it (docs/pretrained.md).  The files are read-only: lensml refuses to write over them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import BadInputError

PREFIX = "pretrained:"
FOLDER = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, Any]]:
    """name -> {"file", "task", "trained_on", "scores", "recipe"} of every shipped model."""
    return json.loads((FOLDER / "catalogue.json").read_text(encoding="utf-8"))


def is_pretrained_name(path: object) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def pretrained_path(reference: str) -> Path:
    """The file of `pretrained:NAME`; an unknown name is a one-line error listing the known ones."""
    name = reference[len(PREFIX):]
    entry = catalogue().get(name)
    if entry is None:
        raise BadInputError(f"no pretrained model {name!r}; `lensml models --pretrained` lists: "
                            f"{', '.join(sorted(catalogue()))}")
    return FOLDER / entry["file"]


def is_shipped_file(path: Path) -> bool:
    """Whether `path` is one of the shipped files (which nothing may overwrite)."""
    try:
        return path.resolve().parent == FOLDER and path.name.endswith(".safetensors")
    except OSError:
        return False
