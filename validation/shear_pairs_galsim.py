#!/usr/bin/env python
"""An independent paired-ring shear test set, drawn with plain GalSim + numpy (no lensml import).

lensml's shear figures are claimed on data that lensml's own simulator did not draw: this script
shares no code with `lensml simulate weak`, only the folder layout, so `lensml evaluate` reads it.

Design (the reference set): base galaxy b is drawn at RING orientations (its intrinsic shape
rotated in steps of 180/RING degrees) and, at each, sheared by +G and -G along one component
(g1 for even b, g2 for odd b), both members of a pair carrying the same noise realisation.
Stamp i is base i // (2 RING), orientation (i // 2) % RING, sign + for even i.

Distribution: intrinsic ellipticity as shear components e1, e2 ~ N(0, 0.2) each, truncated at
|e| < 0.8; Sersic n ~ U(0.8, 2.5); half-light radius ~ U(0.4, 1.0) arcsec; round Moffat PSF
(beta 3.5, FWHM 0.7 arcsec); 0.2 arcsec pixels; 64 x 64 stamps; centroid offset ~ U(-0.5, 0.5)
pixel in x and y (the same for every stamp of a base galaxy). Optional Gaussian noise at SNR S
(GalSim's sqrt(sum I^2) / sigma, on the unsheared galaxy of that orientation), one realisation per
pair, another per orientation and base galaxy. Both stamps are drawn with GalSim's default
method ('auto', pixel response included).

Layout written to DIR:
    gal_<i>.fits                 float32 primary HDUs with a PIXSCALE header (arcsec / pixel)
    psf.fits                     the PSF, the same for every stamp (each entry names it)
    data.json                    [{galaxy, psf, e1, e2 (PSF distortion, 0), g1, g2,
                                   base, pair, ring, sign, component, + truth of the galaxy}, ...]
    truth.json                   the settings, seed and versions

Every random number of base galaxy b comes from numpy's generator seeded by (seed, b), so the
result does not depend on --workers or --shard.

    python validation/shear_pairs_galsim.py -n 2500 -o /tmp/val_nf --workers 2
    python validation/shear_pairs_galsim.py -n 2500 -o /tmp/val_snr30 --snr 30 --workers 2
    # sharded: run K = 1..N (anywhere), then --merge
    python validation/shear_pairs_galsim.py -n 2500 -o DIR --shard 1/4 ; ... ; python ... -n 2500 -o DIR --merge
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import galsim
import numpy as np

SHARD_MANIFEST = "data.shard-{k}-of-{n}.json"


def settings_from_args(args: argparse.Namespace) -> dict:
    return {
        "n_base": args.n, "ring": args.ring, "shear": args.shear, "snr": args.snr, "seed": args.seed,
        "stamp_size": args.stamp_size, "pixel_scale": args.pixel_scale,
        "psf": {"profile": "moffat", "fwhm": args.psf_fwhm, "beta": args.psf_beta, "e1": 0.0, "e2": 0.0},
        "galaxy": {"profile": "sersic", "sersic_n": [0.8, 2.5], "hlr_arcsec": [0.4, 1.0],
                   "e_sigma_per_component": 0.2, "e_max": 0.8, "ellipticity_type": "shear (g)",
                   "offset_pixels": [-0.5, 0.5], "flux": 1.0},
        "draw_method": "auto",
    }


def base_params(seed: int, base: int) -> dict:
    """The draws of base galaxy `base`; the order of draws is part of the format."""
    rng = np.random.default_rng([int(seed), int(base)])
    while True:
        e1, e2 = rng.normal(0.0, 0.2, size=2)
        if math.hypot(e1, e2) < 0.8:
            break
    return {
        "e_int1": float(e1), "e_int2": float(e2),
        "sersic_n": float(rng.uniform(0.8, 2.5)),
        "hlr": float(rng.uniform(0.4, 1.0)),
        "dx": float(rng.uniform(-0.5, 0.5)), "dy": float(rng.uniform(-0.5, 0.5)),
        "noise_seed": int(rng.integers(1, 2**62)),
    }


def _card(key: str, value, comment: str = "") -> bytes:
    if isinstance(value, bool):
        text = "T" if value else "F"
    elif isinstance(value, (int, np.integer)):
        text = str(int(value))
    elif isinstance(value, float):
        text = repr(float(value)).upper()
        if "." not in text and "E" not in text:
            text += ".0"
    else:
        text = "'" + str(value).replace("'", "''").ljust(8) + "'"
    card = f"{key:<8}= {text:>20}" + (f" / {comment}" if comment else "")
    return card[:80].ljust(80).encode("ascii")


def fits_bytes(array: np.ndarray, header: dict) -> bytes:
    """A FITS file of one float32 primary image (astropy's writer costs ~5 ms a stamp; this ~50 us)."""
    ny, nx = array.shape
    cards = [_card("SIMPLE", True, "conforms to FITS standard"), _card("BITPIX", -32, "array data type"),
             _card("NAXIS", 2), _card("NAXIS1", nx), _card("NAXIS2", ny)]
    for key, value in header.items():
        value, comment = value if isinstance(value, tuple) else (value, "")
        cards.append(_card(key, value, comment))
    head = b"".join(cards) + b"END".ljust(80)
    head += b" " * (-len(head) % 2880)
    data = np.ascontiguousarray(array, dtype=">f4").tobytes()
    return head + data + b"\0" * (-len(data) % 2880)


def _write_bytes(path: Path, raw: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def _write_fits(path: Path, array: np.ndarray, header: dict) -> None:
    _write_bytes(path, fits_bytes(array, header))


_STATE: dict = {}


def _init(settings: dict, out: str) -> None:
    psf = galsim.Moffat(beta=settings["psf"]["beta"], fwhm=settings["psf"]["fwhm"])
    size, scale = settings["stamp_size"], settings["pixel_scale"]
    psf_image = psf.drawImage(nx=size, ny=size, scale=scale).array.astype(np.float32)
    header = {"PIXSCALE": (scale, "arcsec / pixel"), "OBJECT": "psf", "E1": 0.0, "E2": 0.0}
    _STATE.update(settings=settings, out=Path(out), psf=psf, psf_bytes=fits_bytes(psf_image, header))


PSF_FILE = "psf.fits"  # one PSF for the whole set: every entry names this file


def draw_base(base: int) -> list[dict]:
    """Draw and write the 2 x ring stamps of one base galaxy; return their data.json entries."""
    s, out, psf = _STATE["settings"], _STATE["out"], _STATE["psf"]
    ring, G, snr = s["ring"], s["shear"], s["snr"]
    size, scale = s["stamp_size"], s["pixel_scale"]
    p = base_params(s["seed"], base)
    component = 1 + base % 2
    profile = galsim.Sersic(n=p["sersic_n"], half_light_radius=p["hlr"], flux=1.0)
    e_int = p["e_int1"] + 1j * p["e_int2"]
    offset = (p["dx"] * scale, p["dy"] * scale)
    header = {"PIXSCALE": (scale, "arcsec / pixel")}
    entries = []
    for k in range(ring):
        e_rot = e_int * np.exp(2j * np.pi * k / ring)  # position angle + k 180 / ring degrees
        intrinsic = profile.shear(g1=e_rot.real, g2=e_rot.imag)
        noise = None
        sigma = 0.0
        if snr is not None:
            unsheared = galsim.Convolve(intrinsic.shift(*offset), psf).drawImage(nx=size, ny=size, scale=scale).array
            sigma = float(np.sqrt(np.sum(unsheared.astype(np.float64) ** 2)) / snr)
            noise = np.random.default_rng([p["noise_seed"], k]).normal(0.0, sigma, size=(size, size))
        for sign in (1, -1):
            index = base * 2 * ring + 2 * k + (0 if sign > 0 else 1)
            g1, g2 = (sign * G, 0.0) if component == 1 else (0.0, sign * G)
            gal = galsim.Convolve(intrinsic.shear(g1=g1, g2=g2).shift(*offset), psf)
            image = gal.drawImage(nx=size, ny=size, scale=scale).array.astype(np.float64)
            if noise is not None:
                image = image + noise
            entry = {"galaxy": f"gal_{index}.fits", "psf": PSF_FILE, "e1": 0.0, "e2": 0.0,
                     "g1": g1, "g2": g2, "base": base, "pair": base * ring + k, "ring": k, "sign": sign,
                     "component": component, "sersic_n": p["sersic_n"], "hlr": p["hlr"],
                     "e_int1": float(e_rot.real), "e_int2": float(e_rot.imag), "dx": p["dx"], "dy": p["dy"]}
            if snr is not None:
                entry.update(snr=float(snr), noise_sigma=sigma)
            _write_fits(out / entry["galaxy"], image, {**header, "OBJECT": "galaxy", "G1": g1, "G2": g2})
            entries.append(entry)
    return entries


def write_manifest(path: Path, entries: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("[\n" + ",\n".join("  " + json.dumps(e) for e in entries) + "\n]\n")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_from_args(args)
    truth_path = out / "truth.json"
    if truth_path.is_file():
        old = json.loads(truth_path.read_text()).get("settings")
        if old != json.loads(json.dumps(settings)):
            sys.exit(f"{out} holds a set drawn with other settings ({truth_path}); choose a new folder")
    truth = {"writer": "validation/shear_pairs_galsim.py (independent of lensml)", "settings": settings,
             "n_stamps": args.n * 2 * args.ring, "galsim": galsim.__version__, "numpy": np.__version__,
             "python": platform.python_version()}
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")

    if args.merge:
        return merge(out, args.n, args.ring)
    _init(settings, str(out))
    _write_bytes(out / PSF_FILE, _STATE["psf_bytes"])
    bases = range(args.n)
    if args.shard:
        k, n = args.shard
        bases = range(k - 1, args.n, n)
    t0 = time.perf_counter()
    entries: list[dict] = []
    if args.workers == 1:
        for b in bases:
            entries += draw_base(b)
    else:
        chunk = max(1, min(16, len(bases) // (args.workers * 8)))
        with mp.get_context("fork" if sys.platform != "win32" else "spawn").Pool(
                args.workers, initializer=_init, initargs=(settings, str(out))) as pool:
            for part in pool.imap(draw_base, bases, chunksize=chunk):
                entries += part
    elapsed = time.perf_counter() - t0
    name = "data.json" if not args.shard else SHARD_MANIFEST.format(k=args.shard[0], n=args.shard[1])
    write_manifest(out / name, entries)
    print(f"{out / name}: {len(entries)} stamps in {elapsed:.1f} s "
          f"({len(entries) / elapsed:.0f} stamps/s with {args.workers} worker(s))")
    return out / name


def merge(out: Path, n_base: int, ring: int) -> Path:
    entries: dict[int, dict] = {}
    for part in sorted(out.glob(SHARD_MANIFEST.format(k="*", n="*"))):
        for e in json.loads(part.read_text()):
            entries[int(e["galaxy"][4:-5])] = e
    n = n_base * 2 * ring
    missing = sorted(set(range(n)) - set(entries))
    if missing:
        sys.exit(f"{out}: {len(missing)} stamps (first {missing[0]}) are in no shard manifest; run those shards")
    write_manifest(out / "data.json", [entries[i] for i in range(n)])
    print(f"{out / 'data.json'}: merged {n} stamps")
    return out / "data.json"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, required=True, help="number of base galaxies (2 x ring stamps each)")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    ap.add_argument("--snr", type=float, default=None, help="Gaussian noise at this SNR (default: noise-free)")
    ap.add_argument("--ring", type=int, default=4, help="orientations per base galaxy (default 4)")
    ap.add_argument("--shear", type=float, default=0.02, help="|g| of the pairs (default 0.02)")
    ap.add_argument("--psf-fwhm", type=float, default=0.7, help="Moffat FWHM in arcsec (default 0.7)")
    ap.add_argument("--psf-beta", type=float, default=3.5, help="Moffat beta (default 3.5)")
    ap.add_argument("--pixel-scale", type=float, default=0.2, help="arcsec / pixel (default 0.2)")
    ap.add_argument("--stamp-size", type=int, default=64, help="stamp side in pixels (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    ap.add_argument("--shard", type=parse_shard, default=None, help="draw only base galaxies b with b %% N == K-1")
    ap.add_argument("--merge", action="store_true", help="merge the shard manifests into data.json")
    args = ap.parse_args(argv)
    checks = [(args.n > 0, "-n must be positive"), (args.ring >= 1, "--ring must be >= 1"),
              (0 < args.shear < 0.5, "--shear must be in (0, 0.5)"),
              (args.snr is None or args.snr > 0, "--snr must be > 0"),
              (args.psf_fwhm > 0, "--psf-fwhm must be > 0"), (args.psf_beta > 1.1, "--psf-beta must be > 1.1"),
              (args.workers >= 1, "--workers must be >= 1"), (args.stamp_size >= 8, "--stamp-size must be >= 8")]
    for ok, message in checks:
        if not ok:
            ap.error(message)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
