"""The independent shear reference sets (validation/shear_pairs_galsim.py): lensml reads them as paired
sets, and drawing them in shards gives the same set as drawing them at once."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from lensml.io.manifest import read_manifest
from lensml.workflows.shear_eval import paired_design

SCRIPT = Path(__file__).resolve().parents[1] / "validation" / "shear_pairs_galsim.py"


def draw(out: Path, *flags: str) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "-n", "3", "--ring", "2", "-o", str(out), "--snr", "30",
                             "--seed", "4", "--stamp-size", "24", *flags], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_reference_set_is_a_paired_set_with_one_psf_and_shards_merge_to_it(tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    draw(whole)
    for k in (1, 2):
        draw(sharded, "--shard", f"{k}/2")
    draw(sharded, "--merge")
    manifest = read_manifest(whole)
    design = paired_design(manifest, list(range(len(manifest))))
    assert design is not None and design["pair_shear"] == 0.02 and len(manifest) == 12
    assert {e["psf"] for e in manifest.entries} == {"psf.fits"}  # one PSF file named by every entry
    assert sorted(p.name for p in whole.glob("psf*")) == ["psf.fits"]
    psf = fits.getdata(whole / "psf.fits")
    assert psf.shape == (24, 24) and abs(psf.sum() - 1) < 0.05
    assert json.loads((sharded / "data.json").read_text()) == json.loads((whole / "data.json").read_text())
    for e in manifest.entries:  # the same pixels, whichever process drew them
        np.testing.assert_array_equal(fits.getdata(whole / e["galaxy"]), fits.getdata(sharded / e["galaxy"]))
    plus, minus = (fits.getdata(whole / manifest.entries[i]["galaxy"]).astype(float) for i in (0, 1))
    assert 0 < np.abs(plus - minus).max() < 0.1 * plus.max()  # a pair differs by the shear, not by its noise
