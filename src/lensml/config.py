"""Configuration is data: dataclasses filled from a YAML/JSON file, then from CLI flags."""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import BadInputError, MissingFileError

T = TypeVar("T")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a mapping from a .json, .yaml or .yml file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot parse config ({exc})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a config file must hold a mapping of settings")
    return data


def replace_from(obj: T, values: Mapping[str, Any], source: str) -> T:
    """Return a copy of dataclass `obj` with `values` set; unknown keys are an error.

    Lists become tuples so that range settings such as `snr: [20, 100]` can come from files.
    """
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise BadInputError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    try:
        return dataclasses.replace(obj, **clean)  # type: ignore[type-var]
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{source}: {exc}") from None


def is_count(value: Any, minimum: int = 1) -> bool:
    """A whole number (not a bool, not 1.5) of at least `minimum`: epochs, batch sizes, seeds from a file."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def require(checks: list[tuple[bool, str]], prefix: str = "") -> None:
    """Raise a BadInputError with the first message whose condition is false."""
    for ok, message in checks:
        if not ok:
            raise BadInputError(f"{prefix}{message}")


def as_range(value: float | tuple[float, ...] | list[float], name: str) -> tuple[float, float]:
    """Normalise a fixed value or a (low, high) pair to a (low, high) tuple of floats."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if len(value) == 1:
        return float(value[0]), float(value[0])
    if len(value) != 2:
        raise BadInputError(f"{name}: give one value or a low and a high value, not {list(value)}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise BadInputError(f"{name}: low value {lo} is above high value {hi}")
    return lo, hi
