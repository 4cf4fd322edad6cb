"""The survey registry: presets, YAML surveys, any cutout size, and users' own cutout folders, end to end."""

import csv
import math

import numpy as np
import pytest
from astropy.io import fits

from lensml.cli import main
from lensml.errors import BadInputError
from lensml.simulate.surveys import strong_config
from lensml.surveys import get_survey, load_survey_file, noise_from_depth, survey_from_mapping, survey_names

MY_SURVEY = """\
name: mycam
description: a three-band camera described only here
pixel_scale_arcsec: 0.25
image_size: 40
rgb_bands: [z, r, g]
bands:
  - {name: g, psf_fwhm_arcsec: 0.9, depth_mag: 25.0}
  - {name: r, psf_fwhm_arcsec: 0.8, noise_sigma: 2.0e-12}
  - {name: z, psf_fwhm_arcsec: 0.75, depth_mag: 24.0}
population: ground
simulation: {psf_profile: moffat, psf_supersampled: false}
"""


def test_presets_hold_the_surveys_bands_and_grids():
    expected = {"space": (("VIS",), 0.1), "ground": (("R", "I", "G", "U"), 0.2),
                "euclid": (("VIS", "Y", "J", "H"), 0.1), "lsst": (tuple("ugrizy"), 0.2),
                "hsc": (tuple("grizy"), 0.168), "des": (tuple("griz"), 0.263)}
    assert set(expected) <= set(survey_names())
    for name, (bands, scale) in expected.items():
        survey = get_survey(name)
        assert (survey.band_names, survey.pixel_scale_arcsec) == (bands, scale)
        config = strong_config(name)
        assert config.bands == bands and config.pixel_scale == scale
        assert config.image_size == survey.image_size[0]
        # magnitudes are drawn in r (or VIS): that band has no colour
        assert config.lens_colour[config.reference_band] == (0.0, 0.0)
    assert get_survey("ground").bands[2].filename(7) == "imageSDSS_G-7.fits"
    assert get_survey("space").bands[0].filename(7) == "imageEUC_VIS-7.fits"
    assert get_survey("ground").rgb_indices() == (1, 0, 2)  # I, R, G


def test_lsst_colours_are_redder_for_lenses_than_sources():
    config = strong_config("lsst")
    g, i = config.bands.index("g"), config.bands.index("i")
    # early-type deflectors are red (g - r > 0.8), star-forming sources blue
    assert config.lens_colour[g][0] >= 0.8 and config.source_colour[g][1] < config.lens_colour[g][0]
    assert config.lens_colour[i][1] < 0 < config.source_colour[i][1] + 0.3


def test_depth_gives_the_challenges_measured_noise_within_half_a_magnitude():
    """KiDS r reaches 25.0 (5 sigma, 2" aperture) at 0.2"/px; the challenge's R band noise is 1.53e-12."""
    sigma = noise_from_depth(25.0, 0.2)
    assert abs(2.5 * math.log10(sigma / 1.53e-12)) < 0.5
    # 5 sigma in the aperture: sqrt(N) sigma_pixel * 5 is the flux of magnitude 25
    pixels = math.pi / 0.2**2
    assert 5 * sigma * math.sqrt(pixels) == pytest.approx(10 ** (-0.4 * 25.0))


def test_survey_file_errors_are_one_line(tmp_path):
    good = {"name": "x1", "pixel_scale_arcsec": 0.2, "bands": [{"name": "r", "psf_fwhm_arcsec": 1, "noise_sigma": 1}]}
    assert survey_from_mapping(good).bands[0].prefix == "imageX1_r-"
    cases = [
        ({**good, "colour": 1}, "unknown key"),
        ({**good, "rgb_bands": ["r", "g", "b"]}, "rgb_bands must name three"),
        ({**good, "bands": [{"name": "r", "psf_fwhm_arcsec": 1}]}, "needs noise_sigma"),
        ({**good, "image_size": [8, 8]}, "image_size"),
        ({**good, "population": "moon"}, "population"),
        ({k: v for k, v in good.items() if k != "pixel_scale_arcsec"}, "needs 'pixel_scale_arcsec'"),
        ({**good, "name": "space"}, "already defined with other"),
        ({**good, "bands": [{"name": "r", "psf_fwhm_arcsec": 1, "depth_mag": "abc"}]}, "depth_mag must be a number"),
        ({**good, "mask_value": "abc"}, "mask_value must be a number"),
        ({**good, "bands": [{"name": "r", "psf_fwhm_arcsec": 1, "noise_sigma": 1, "folder": "../etc"}]}, "no '/'"),
        ({**good, "bands": [{"name": "r", "psf_fwhm_arcsec": 1, "noise_sigma": 1, "prefix": "a/b"}]}, "no '/'"),
        ({**good, "bands": [{"name": "r", "noise_sigma": 1}]}, "needs psf_fwhm_arcsec"),
        ({**good, "image_size": 5000}, "from 16 to 1024"),
    ]
    for k, (raw, message) in enumerate(cases):
        path = tmp_path / f"s{k}.yaml"
        import yaml

        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(BadInputError, match=message):
            load_survey_file(path)


def test_a_folder_survey_differing_only_in_settings_is_read(tmp_path, capsys):
    """An edited description or depth in a set's survey.yaml does not lock the set out; other bands do."""
    folder = tmp_path / "des"
    _run("simulate", "strong", "--survey", "des", "-n", 4, "-o", folder, "--seed", 1)
    text = (folder / "survey.yaml").read_text()
    (folder / "survey.yaml").write_text(text.replace("Dark Energy Survey", "DES").replace("psf_fwhm_arcsec: 1.11",
                                                                                      "psf_fwhm_arcsec: 1.2"))
    _run("preview", "-i", folder, "-o", tmp_path / "p.png", "--lenses", 1, "--non-lenses", 1)
    (folder / "survey.yaml").write_text(text.replace("imageDES_g-", "imageDESX_g-"))
    capsys.readouterr()
    assert main(["-q", "preview", "-i", str(folder), "-o", str(tmp_path / "q.png")]) == 2
    assert "already defined with other bands" in capsys.readouterr().err


def test_bad_survey_name_on_the_command_line(tmp_path, capsys):
    assert main(["simulate", "strong", "--survey", "jwst", "-n", "2", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown survey 'jwst'" in err and "lsst" in err


def _run(*args):
    assert main(["-q", *map(str, args)]) == 0


def _end_to_end(folder, tmp_path, band_file, survey_args=()):
    """train, evaluate, predict (folder and one file), features and preview on one simulated set."""
    model = tmp_path / "model"
    _run(*survey_args, "train", "-i", folder, "-m", model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8)
    _run("evaluate", "-i", folder, "-m", model, "--json", tmp_path / "scores.json")
    _run("predict", "-i", folder, "-m", model, "-o", tmp_path / "scores.csv", "--workers", 0)
    with open(tmp_path / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(list((folder / "Public" / "Band1").glob("*.fits")))
    assert all(0 <= float(r["p_lens"]) <= 1 for r in rows)
    _run("predict", "-i", band_file, "-m", model)
    _run("features", "-m", model, "-i", band_file, "-o", tmp_path / "maps")
    assert len(list((tmp_path / "maps").glob("*.png"))) == 3  # lens_flow's three convolutions
    _run(*survey_args, "preview", "-i", folder, "-o", tmp_path / "grid.png", "--lenses", 2, "--non-lenses", 2)
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    return model


@pytest.mark.slow
def test_lsst_at_64_pixels_end_to_end(tmp_path, capsys):
    folder = tmp_path / "lsst"
    _run("simulate", "strong", "--survey", "lsst", "--image-size", 64, "-n", 24, "-o", folder, "--seed", 2)
    files = sorted((folder / "Public" / "Band3").glob("imageLSST_r-*.fits"))
    assert len(files) == 24 and fits.getdata(files[0]).shape == (64, 64)
    assert len(list((folder / "Public").iterdir())) == 6
    model = _end_to_end(folder, tmp_path, files[0])
    from lensml.modelfile import read_info

    info = read_info(model)
    assert info.image_size == (64, 64) and info.arch_kwargs["in_channels"] == 6 and info.survey["name"] == "lsst"
    # another cutout size is refused in one line
    other = tmp_path / "lsst48"
    _run("simulate", "strong", "--survey", "lsst", "--image-size", 48, "-n", 4, "-o", other, "--seed", 3)
    capsys.readouterr()
    assert main(["-q", "evaluate", "-i", str(other), "-m", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images are 48x48 pixels; this lens_flow model takes 64x64" in err


@pytest.mark.slow
def test_a_survey_given_only_as_yaml_end_to_end(tmp_path):
    survey_file = tmp_path / "mycam.yaml"
    survey_file.write_text(MY_SURVEY)
    folder = tmp_path / "mycam"
    _run("--survey-file", survey_file, "simulate", "strong", "--survey", "mycam", "-n", 16, "-o", folder, "--seed", 4)
    files = sorted((folder / "Public" / "Band2").glob("imageMYCAM_r-*.fits"))
    assert len(files) == 16 and fits.getdata(files[0]).shape == (40, 40)
    assert fits.getheader(files[0])["PIXSCALE"] == 0.25
    # the folder describes its survey (survey.yaml), so later commands need no --survey-file
    forget_mycam()
    model = _end_to_end(folder, tmp_path, files[0])
    # and the model file carries it: a lone band file is recognised without the folder's survey.yaml
    forget_mycam()
    lone = tmp_path / "lone"
    lone.mkdir()
    for band in "grz":
        (lone / f"imageMYCAM_{band}-100000.fits").write_bytes(
            (folder / "Public" / f"Band{'grz'.index(band) + 1}" / f"imageMYCAM_{band}-100000.fits").read_bytes())
    _run("predict", "-i", lone / "imageMYCAM_g-100000.fits", "-m", model)


def forget_mycam():
    from lensml import surveys

    surveys._REGISTRY.pop("mycam", None)


@pytest.fixture(autouse=True)
def _builtin_surveys_only():
    """Each test starts from the built-in registry, so no test leans on a survey another one registered."""
    forget_mycam()
    yield
    forget_mycam()


def _write_cutouts(challenge_folder, out, survey):
    """The scenes of a simulated challenge folder as a user's own cutouts: cubes and multi-extension files."""
    from lensml.io.challenge import list_ids, read_label_table, read_scene

    out.mkdir()
    labels = read_label_table(challenge_folder).as_dict()
    rows = []
    for k, image_id in enumerate(list_ids(challenge_folder, survey)):
        scene = read_scene(challenge_folder, survey, image_id)
        name = f"obj_{image_id}.fits"
        if k % 2:
            fits.PrimaryHDU(scene).writeto(out / name)
        else:
            fits.HDUList([fits.PrimaryHDU(), *[fits.ImageHDU(band) for band in scene]]).writeto(out / name)
        rows.append(f"{name},{labels[image_id]}")
    (out / "labels.csv").write_text("file,is_lens\n" + "\n".join(rows) + "\n")


@pytest.mark.slow
def test_a_folder_of_cubes_and_multi_extension_files(tmp_path):
    from lensml.data.lens_set import load_lens_set

    sim = tmp_path / "sim"
    _run("simulate", "strong", "--survey", "des", "-n", 20, "-o", sim, "--seed", 5)
    own = tmp_path / "own"
    _write_cutouts(sim, own, "des")
    a = load_lens_set(sim, "zscale", progress=False)
    b = load_lens_set(own, "zscale", progress=False)
    np.testing.assert_array_equal(a.labels, b.labels)
    # the mask value is the survey's: DES has none, so the cutouts (no survey.yaml) read the same
    np.testing.assert_array_equal(np.asarray(a.images), np.asarray(b.images))
    model = tmp_path / "m"
    _run("train", "-i", own, "-m", model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8)
    _run("evaluate", "-i", own, "-m", model)
    _run("predict", "-i", own, "-m", model, "-o", tmp_path / "p.csv", "--workers", 0)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == sorted(p.name for p in own.glob("*.fits"))
    assert [int(r["is_lens"]) for r in rows] == b.labels.tolist()
    _run("predict", "-i", own / rows[0]["file"], "-m", model)
    _run("preview", "-i", own, "-o", tmp_path / "own.png", "--lenses", 2, "--non-lenses", 2)


@pytest.mark.slow
def test_a_model_refuses_another_surveys_bands_and_reads_masks_alike(tmp_path, capsys):
    des = tmp_path / "des"
    _run("simulate", "strong", "--survey", "des", "-n", 16, "-o", des, "--seed", 8)
    model = tmp_path / "m"
    _run("train", "-i", des, "-m", model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8)
    ground = tmp_path / "ground45"
    _run("simulate", "strong", "--survey", "ground", "--image-size", 45, "-n", 4, "-o", ground, "--seed", 9)
    capsys.readouterr()
    assert main(["-q", "evaluate", "-i", str(ground), "-m", str(model)]) == 2
    assert "trained on des (g, r, i, z)" in capsys.readouterr().err
    assert main(["-q", "predict", "-i", str(ground), "-m", str(model), "--workers", "0"]) == 2
    assert "other bands" in capsys.readouterr().err
    # a cutout folder without survey.yaml has no mask value: a pixel of 100 is data, in the folder and alone
    own = tmp_path / "own"
    _write_cutouts(des, own, "des")
    first = sorted(own.glob("*.fits"))[0]
    with fits.open(first, mode="update") as hdus:
        hdus[-1].data[5:9, 5:9] = 100.0
    cut_model = tmp_path / "cm"
    _run("train", "-i", own, "-m", cut_model, "--arch", "lens_flow", "--epochs", 1, "--batch-size", 8)
    import lensml

    folder_scores = lensml.predict(own, cut_model, workers=0)
    alone = lensml.predict(first, cut_model)
    assert alone[0] == pytest.approx(folder_scores[0], abs=1e-6)


def test_cutout_folder_errors(tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    fits.PrimaryHDU(np.zeros((3, 32, 32), np.float32)).writeto(own / "a.fits")
    fits.PrimaryHDU(np.zeros((3, 30, 32), np.float32)).writeto(own / "b.fits")
    (own / "labels.csv").write_text("file,is_lens\na.fits,1\nb.fits,0\n")
    assert main(["-q", "train", "-i", str(own), "-m", str(tmp_path / "m"), "--arch", "lens_flow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b.fits: cutout is 3x30x32" in err
    (own / "b.fits").unlink()
    (own / "labels.csv").write_text("file,is_lens\nc.fits,1\n")
    assert main(["-q", "train", "-i", str(own), "-m", str(tmp_path / "m"), "--arch", "lens_flow"]) == 2
    assert "cutout a.fits has no label" in capsys.readouterr().err
    import yaml

    (own / "survey.yaml").write_text(yaml.safe_dump(get_survey("lsst").to_dict()))  # 6 bands, for 3-band cubes
    assert main(["-q", "preview", "-i", str(own), "-o", str(tmp_path / "p.png")]) == 2
    assert "3 band(s), but" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["cas_swinburne", "lastro_epfl", "cmu_deeplens", "wsi_net", "lens_flow", "lens_finder"])
def test_every_lens_finder_sizes_itself(arch):
    """DES cutouts (45x45, 4 bands) and a non-square LSST-like cutout (48x64, 6 bands) run through every finder."""
    import torch

    from lensml.models import create_model

    for bands, size in ((4, (45, 45)), (6, (48, 64))):
        if arch == "lastro_epfl":  # its 'valid' convolutions need about 70 pixels
            with pytest.raises(ValueError, match=f"{size[0]}x{size[1]} pixels are too small"):
                create_model(arch, in_channels=bands, image_size=size)
            size = (72, 80)
        net = create_model(arch, in_channels=bands, out_features=1, image_size=size).eval()
        with torch.no_grad():
            assert net(torch.zeros(2, bands, *size)).shape == (2, 1)


@pytest.mark.slow
def test_non_square_cutouts_are_cut_from_a_square_render(tmp_path):
    folder = tmp_path / "hsc"
    _run("simulate", "strong", "--survey", "hsc", "--image-size", 48, 64, "-n", 12, "-o", folder, "--seed", 6)
    path = folder / "Public" / "Band3" / "imageHSC_i-100000.fits"
    header = fits.getheader(path)
    assert fits.getdata(path).shape == (48, 64) and (header["CRPIX1"], header["CRPIX2"]) == (32.5, 24.5)
    # the cutout is the centre of the square scene drawn with the same seed
    square = tmp_path / "square"
    _run("simulate", "strong", "--survey", "hsc", "--image-size", 64, "-n", 12, "-o", square, "--seed", 6)
    full = fits.getdata(square / "Public" / "Band3" / "imageHSC_i-100000.fits")
    np.testing.assert_array_equal(fits.getdata(path), full[8:56])
    model = tmp_path / "m"
    _run("train", "-i", folder, "-m", model, "--arch", "lens_finder", "--epochs", 1, "--batch-size", 4)
    _run("predict", "-i", path, "-m", model)
