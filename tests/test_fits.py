import warnings

import numpy as np
import pytest
from astropy.io import fits

from lensml.errors import BadInputError, MissingFileError
from lensml.io.fits import read_fits_image, write_fits_image


def test_written_file_is_standard_fits_that_astropy_reads_back(tmp_path):
    image = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32) * 1e-11
    path = tmp_path / "x.fits"
    write_fits_image(path, image, {"PIXSCALE": (0.1, "arcsec / pixel"), "OBJECT": "galaxy", "G1": -0.25,
                                   "NPIX": 12, "MASKED": False, "NOTE": "it's"})
    assert path.stat().st_size % 2880 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path) as hdus:
            hdus.verify("exception")
            header, data = hdus[0].header, hdus[0].data
            assert header["BITPIX"] == -32 and data.shape == (7, 5)
            np.testing.assert_array_equal(data, image)
            assert header["PIXSCALE"] == 0.1 and header.comments["PIXSCALE"] == "arcsec / pixel"
            assert (header["OBJECT"], header["G1"], header["NPIX"], header["MASKED"], header["NOTE"]) == (
                "galaxy", -0.25, 12, False, "it's")
    np.testing.assert_array_equal(read_fits_image(path), image)
    assert [p.name for p in tmp_path.iterdir()] == ["x.fits"]


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="absent.fits"):
        read_fits_image(tmp_path / "absent.fits")
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = nonsense" + b" " * 3000)
    with pytest.raises(BadInputError, match="bad.fits"):
        read_fits_image(bad)
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((2, 3, 3), np.float32)).writeto(cube)
    with pytest.raises(BadInputError, match="2-D"):
        read_fits_image(cube)


def _astropy_first_image(path):
    with fits.open(path) as hdus:
        return next(np.asarray(h.data, dtype=np.float32) for h in hdus if h.data is not None and h.is_image)


@pytest.mark.parametrize("case", ["f32", "f64", "u8", "i16", "i32", "i16_bzero", "i32_bscale", "f32_bscale",
                                  "i16_blank", "extension", "compressed", "truncated"])
def test_reader_agrees_with_astropy(tmp_path, case):
    """The direct reader of plain primary images, and astropy for every other file, give astropy's values."""
    from lensml.io import fits as lensml_fits

    rng = np.random.default_rng(1)
    path = tmp_path / f"{case}.fits"
    kind = case.split("_")[0]
    data = {"f32": rng.normal(size=(9, 7)).astype(np.float32), "f64": rng.normal(size=(9, 7)),
            "u8": rng.integers(0, 255, (9, 7)).astype(np.uint8), "i16": rng.integers(-999, 999, (9, 7)).astype(np.int16),
            "i32": rng.integers(-10**6, 10**6, (9, 7)).astype(np.int32)}.get(kind, rng.normal(size=(9, 7)).astype(np.float32))
    hdu = fits.PrimaryHDU(data)
    if case == "i16_bzero":
        hdu = fits.PrimaryHDU(rng.integers(0, 60000, (9, 7)).astype(np.uint16))  # stored as int16 + BZERO 32768
    if case in ("i32_bscale", "f32_bscale"):
        hdu.header["BSCALE"], hdu.header["BZERO"] = 0.25, -3.0
    if case == "i16_blank":
        data[0, 0] = -32768
        hdu = fits.PrimaryHDU(data.astype(np.int16))
        hdu.header["BLANK"] = -32768
    if case == "extension":
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(path)
    elif case == "compressed":
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(path)
    else:
        hdu.writeto(path)
    raw = path.read_bytes()
    fast = lensml_fits._plain_primary_image(raw)
    assert (fast is None) == (case in ("extension", "compressed", "i16_bzero", "i32_bscale", "f32_bscale", "i16_blank"))
    if case == "truncated":
        path.write_bytes(raw[:-2880])
        assert lensml_fits._plain_primary_image(path.read_bytes()) is None
        with pytest.raises(BadInputError, match="truncated.fits"):
            read_fits_image(path)
        return
    expected = _astropy_first_image(path)
    got = read_fits_image(path)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if case == "i16_blank":
        assert np.isnan(got[0, 0])


def test_reader_reads_the_challenge_files_as_astropy_does(challenge_samples):
    files = sorted(challenge_samples.rglob("*.fits"))
    assert len(files) == 8 + 6 * 4  # 8 space scenes of one band, 6 ground scenes of four
    for path in files:
        np.testing.assert_array_equal(read_fits_image(path), _astropy_first_image(path))
