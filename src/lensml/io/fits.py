"""FITS images: read the first image HDU as float32, write a primary HDU atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from ..errors import BadInputError, MissingFileError
from .atomic import write_bytes_atomic


def _first_image(path: Path) -> np.ndarray:
    with fits.open(path, memmap=False) as hdus:
        for hdu in hdus:
            if hdu.data is not None and getattr(hdu, "is_image", False):
                return np.asarray(hdu.data, dtype=np.float32)
    raise BadInputError(f"{path}: FITS file holds no image")


BLOCK = 2880  # FITS files are made of 2880-byte blocks
_NEEDED = frozenset((b"SIMPLE", b"BITPIX", b"NAXIS", b"NAXIS1", b"NAXIS2"))
# Scaled or blanked data follow astropy's own dtype rules, and random groups are not images.
_LEFT_TO_ASTROPY = frozenset((b"BSCALE", b"BZERO", b"BLANK", b"GROUPS"))
_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _header_value(card: bytes) -> str:
    """The value field of a fixed-format card, without its comment (numbers and logicals only)."""
    return card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace")


def _plain_primary_image(raw: bytes) -> np.ndarray | None:
    """The primary 2-D image of an uncompressed FITS file, read without astropy; None for any other file.

    Survey cutouts are tiny single-HDU files, for which astropy's general machinery costs about
    ten times the reading itself. Anything unusual (image in an extension, compression, scaling
    or blank values, random groups, a header this parser does not follow, truncated data) returns
    None and astropy reads it.
    """
    keys: dict[bytes, str] = {}
    for start in range(0, len(raw) - 79, 80):
        card = raw[start : start + 80]
        key = card[:8].rstrip()
        if key == b"END":
            data_start = (start // BLOCK + 1) * BLOCK
            break
        if key in _LEFT_TO_ASTROPY:
            return None
        if key in _NEEDED and card[8:10] == b"= ":
            keys[key] = _header_value(card)
    else:
        return None
    if keys.get(b"SIMPLE") != "T" or keys.get(b"NAXIS") != "2":
        return None
    try:
        dtype = _DTYPES[int(keys[b"BITPIX"])]
        width, height = int(keys[b"NAXIS1"]), int(keys[b"NAXIS2"])
    except (KeyError, ValueError):
        return None
    size = width * height * np.dtype(dtype).itemsize
    if width < 1 or height < 1 or len(raw) < data_start + size:
        return None
    return np.frombuffer(raw, dtype=dtype, count=width * height, offset=data_start).reshape(height, width).astype(np.float32)


def read_fits_image(path: str | os.PathLike) -> np.ndarray:
    """Return the data of the first HDU that holds a 2-D image, as float32."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MissingFileError(f"{path}: a folder, not a FITS file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    image = _plain_primary_image(raw)
    if image is not None:
        return image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # damaged headers end in one clear error below
            data = _first_image(path)
    except BadInputError:
        raise
    except Exception as exc:  # astropy raises many types for damaged files
        raise BadInputError(f"{path}: not a readable FITS image ({exc})") from None
    if data.ndim != 2:
        raise BadInputError(f"{path}: expected a 2-D image, found shape {data.shape}")
    return data


def _card(key: str, value: object, comment: str = "") -> str:
    """One 80-character header card, fixed format (values right-aligned to column 30)."""
    if isinstance(value, bool):
        text = "T" if value else "F"
    elif isinstance(value, (int, np.integer)):
        text = str(int(value))
    elif isinstance(value, (float, np.floating)):
        text = repr(float(value)).upper()
        if "." not in text and "E" not in text:
            text += "."
    else:
        text = "'" + str(value).replace("'", "''").ljust(8) + "'"
        text = text.ljust(20)
    card = f"{key.upper():<8}= {text:>20}" + (f" / {comment}" if comment else "")
    if len(card) > 80:
        raise ValueError(f"FITS header card too long: {card!r}")
    return card.ljust(80)


def fits_image_bytes(image: np.ndarray, header: Mapping[str, object] | None = None) -> bytes:
    """A complete single-HDU FITS file holding `image` as big-endian float32 (BITPIX -32).

    Written directly rather than through astropy, which costs several times the GalSim draw of a
    small stamp; astropy reads the result back in the tests.
    """
    data = np.ascontiguousarray(image, dtype=">f4")
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    cards = [_card("SIMPLE", True), _card("BITPIX", -32), _card("NAXIS", 2),
             _card("NAXIS1", data.shape[1]), _card("NAXIS2", data.shape[0])]
    for key, value in (header or {}).items():
        cards.append(_card(key, *value) if isinstance(value, tuple) else _card(key, value))
    head = ("".join(cards) + "END".ljust(80)).encode("ascii")
    head += b" " * (-len(head) % BLOCK)
    body = data.tobytes()
    return head + body + b"\0" * (-len(body) % BLOCK)


def write_fits_image(
    path: str | os.PathLike, image: np.ndarray, header: Mapping[str, object] | None = None
) -> None:
    """Write `image` as the primary HDU of a new FITS file, atomically.

    Header values may be plain values or (value, comment) pairs.
    """
    write_bytes_atomic(path, fits_image_bytes(image, header))


def read_fits_header_value(path: str | os.PathLike, key: str, default: float) -> float:
    """A numeric keyword of a FITS file's first header (e.g. PIXSCALE), or `default` when absent."""
    try:
        value = fits.getheader(Path(path)).get(key, default)
        return float(value)
    except (OSError, ValueError, TypeError):
        return default
