"""The challenge-layout reader on the Lens Finding Challenge 1.0 sample files (or their stand-ins, see conftest)."""

import shutil

import numpy as np
import pytest
from astropy.io import fits

from lensml.errors import BadInputError, MissingFileError
from lensml.io.challenge import (
    CHALLENGE_MASK_VALUE,
    band_path,
    detect_survey,
    get_survey,
    labels_for,
    list_ids,
    masked_pixels,
    read_label_table,
    read_labels,
    read_scene,
    read_scene_files,
)

SPACE_IDS = [100002, 100003, 100004, 100008, 100010, 100012, 100023, 100026]
GROUND_IDS = [100002, 100003, 100004, 100008, 100010, 100014]


@pytest.fixture(scope="module")
def space(challenge_samples):
    return challenge_samples / "space"


@pytest.fixture(scope="module")
def ground(challenge_samples):
    return challenge_samples / "ground"


def _copy_scene(src, dst, survey, image_id):
    """Copy every band file of one sample scene into the same layout under `dst`."""
    for b in range(len(get_survey(survey).bands)):
        target = band_path(dst, survey, b, image_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(band_path(src, survey, b, image_id), target)


def test_survey_table():
    assert [b.name for b in get_survey("ground").bands] == ["R", "I", "G", "U"]
    assert [b.folder for b in get_survey("ground").bands] == ["Band1", "Band2", "Band3", "Band4"]
    assert get_survey("ground").bands[2].filename(7) == "imageSDSS_G-7.fits"
    assert get_survey("space").bands[0].filename(7) == "imageEUC_VIS-7.fits"
    assert (get_survey("space").pixel_scale_arcsec, get_survey("ground").pixel_scale_arcsec) == (0.1, 0.2)


def test_detect_survey_and_ids(space, ground):
    assert detect_survey(space) == "space"
    assert detect_survey(ground) == "ground"
    assert list_ids(space, "space") == SPACE_IDS
    assert list_ids(ground, "ground") == GROUND_IDS


def test_labels_from_classifications_csv(space, ground):
    assert read_labels(space) == {100002: 1, 100003: 1, 100004: 0, 100008: 1, 100010: 1,
                                  100012: 0, 100023: 0, 100026: 0}
    assert read_labels(ground) == {100002: 1, 100003: 1, 100004: 0, 100008: 0, 100010: 0, 100014: 1}
    table = read_label_table(ground)
    assert table.extra == {} and table.path.name == "classifications.csv"
    assert labels_for(ground, [100014, 100002, 100004]).tolist() == [1, 1, 0]
    assert labels_for(ground, GROUND_IDS[::-1], require_images=True).tolist() == [1, 0, 0, 0, 1, 1]


def test_space_scene(space):
    for image_id in SPACE_IDS:
        scene = read_scene(space, "space", image_id)
        assert scene.shape == (1, 101, 101) and scene.dtype == np.float32
        assert np.array_equal(scene[0], fits.getdata(space / f"Public/Band1/imageEUC_VIS-{image_id}.fits"))


def test_ground_scene_is_stacked_r_i_g_u(ground):
    for image_id in GROUND_IDS:
        scene = read_scene(ground, "ground", image_id)
        assert scene.shape == (4, 101, 101) and scene.dtype == np.float32
        assert scene.flags.c_contiguous
        for k, name in enumerate("RIGU"):
            direct = fits.getdata(ground / f"Public/Band{k + 1}/imageSDSS_{name}-{image_id}.fits")
            assert np.array_equal(scene[k], direct)
    g_direct = fits.getdata(ground / "Public/Band3/imageSDSS_G-100002.fits")
    assert np.array_equal(read_scene(ground, "ground", 100002)[2], g_direct)
    assert not np.array_equal(read_scene(ground, "ground", 100002)[1], g_direct)


def test_real_ground_masks_are_found(ground):
    """Two of the six real ground scenes (and their stand-ins) have masked (100) pixels in their U band."""
    masked = {i: masked_pixels(read_scene(ground, "ground", i)).sum(axis=(1, 2)).tolist() for i in GROUND_IDS}
    assert masked[100003] == [0, 0, 0, 49] and masked[100008] == [0, 0, 0, 212]
    assert sum(sum(v) for v in masked.values()) == 49 + 212
    scene = read_scene(ground, "ground", 100008)
    assert np.all(scene[3][masked_pixels(scene[3])] == CHALLENGE_MASK_VALUE)
    assert np.abs(scene[masked_pixels(scene) == 0]).max() < 1e-8


def test_masked_pixels_include_non_finite():
    image = np.array([[1.0, 100.0], [np.nan, -np.inf]], dtype=np.float32)
    assert masked_pixels(image).tolist() == [[False, True], [True, True]]


def test_read_scene_files_from_one_band_file(space, ground):
    scene = read_scene_files(ground / "Public/Band3/imageSDSS_G-100010.fits", 4)
    assert np.array_equal(scene, read_scene(ground, "ground", 100010))
    assert read_scene_files(space / "Public/Band1/imageEUC_VIS-100023.fits").shape == (1, 101, 101)
    with pytest.raises(BadInputError, match="takes 1"):
        read_scene_files(ground / "Public/Band1/imageSDSS_R-100010.fits", 1)


def test_read_scene_files_beside_each_other(tmp_path, space, ground):
    for k, name in enumerate("RIGU"):
        shutil.copy(ground / f"Public/Band{k + 1}/imageSDSS_{name}-100004.fits", tmp_path)
    scene = read_scene_files(tmp_path / "imageSDSS_U-100004.fits", 4)
    assert np.array_equal(scene, read_scene(ground, "ground", 100004))
    other = tmp_path / "my_cutout.fits"
    shutil.copy(space / "Public/Band1/imageEUC_VIS-100004.fits", other)
    assert read_scene_files(other, 1).shape == (1, 101, 101)
    with pytest.raises(BadInputError, match="not a band file of a known survey"):
        read_scene_files(other, 4)


def test_missing_band_file_names_band_and_id(tmp_path, ground):
    for image_id in (100002, 100004):
        _copy_scene(ground, tmp_path, "ground", image_id)
    band_path(tmp_path, "ground", 2, 100004).unlink()
    assert detect_survey(tmp_path) == "ground"
    with pytest.raises(BadInputError, match=r"image 100004 has no G file Public/Band3/imageSDSS_G-100004.fits"):
        list_ids(tmp_path, "ground")
    with pytest.raises(MissingFileError, match="imageSDSS_G-100004.fits"):
        read_scene(tmp_path, "ground", 100004)


def test_missing_band_folder(tmp_path, ground):
    _copy_scene(ground, tmp_path, "ground", 100002)
    shutil.rmtree(tmp_path / "Public" / "Band4")
    with pytest.raises(MissingFileError, match="Band4: no such folder"):
        list_ids(tmp_path, "ground")


def test_folder_that_is_not_a_challenge_folder(tmp_path):
    with pytest.raises(MissingFileError, match="no Public folder"):
        detect_survey(tmp_path)
    with pytest.raises(MissingFileError, match="no such folder"):
        detect_survey(tmp_path / "absent")
    (tmp_path / "Public" / "Band1").mkdir(parents=True)
    (tmp_path / "Public" / "Band1" / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="holds no"):
        detect_survey(tmp_path)


def test_a_set_of_mixed_sizes_names_the_odd_file(tmp_path, space):
    """Cutouts may have any size, but one size per set: the first scene sets it."""
    from lensml.data.lens_set import load_lens_set

    _copy_scene(space, tmp_path, "space", 100002)
    path = band_path(tmp_path, "space", 0, 100003)
    fits.PrimaryHDU(np.zeros((64, 64), dtype=np.float32)).writeto(path)
    assert list_ids(tmp_path, "space") == [100002, 100003]
    assert read_scene(tmp_path, "space", 100003).shape == (1, 64, 64)
    with pytest.raises(BadInputError, match=r"imageEUC_VIS-100003.fits: image is 64x64 pixels, the set's are 101x101"):
        read_scene(tmp_path, "space", 100003, shape=(101, 101))
    (tmp_path / "classifications.csv").write_text("ID,is_lens\n100002,1\n100003,0\n")
    with pytest.raises(BadInputError, match=r"imageEUC_VIS-100003.fits: image is 64x64"):
        load_lens_set(tmp_path, "zscale", progress=False)


def test_label_errors(tmp_path, space):
    _copy_scene(space, tmp_path, "space", 100002)
    with pytest.raises(MissingFileError, match="no classifications.csv"):
        read_labels(tmp_path)
    csv = tmp_path / "classifications.csv"
    csv.write_text("ID,label\n100002,1\n")
    with pytest.raises(BadInputError, match=r"csv: no column is_lens \(or no_source\); found ID, label"):
        read_labels(tmp_path)
    csv.write_text("is_lens\n1\n")
    with pytest.raises(BadInputError, match="no column ID"):
        read_labels(tmp_path)
    csv.write_text("ID,is_lens\n100002,yes\n")
    with pytest.raises(BadInputError, match=r"line 2: is_lens = 'yes' is not an integer"):
        read_labels(tmp_path)
    csv.write_text("ID,is_lens\n100002.5,1\n")
    with pytest.raises(BadInputError, match="ID = '100002.5' is not an integer"):
        read_labels(tmp_path)
    csv.write_text("ID,is_lens\n100002,2\n")
    with pytest.raises(BadInputError, match="must be 0 or 1"):
        read_labels(tmp_path)
    csv.write_text("ID,is_lens\n100002,1\n100002,0\n")
    with pytest.raises(BadInputError, match="line 3: ID 100002 already given on line 2"):
        read_labels(tmp_path)
    csv.write_text("ID,is_lens\n100002,1,7\n")
    with pytest.raises(BadInputError, match="line 2: 3 values for 2 columns"):
        read_labels(tmp_path)


def test_image_without_label_and_label_without_image(tmp_path, space):
    for image_id in (100002, 100003):
        _copy_scene(space, tmp_path, "space", image_id)
    (tmp_path / "classifications.csv").write_text("ID,is_lens\n100002,1\n100099,0\n")
    ids = list_ids(tmp_path, "space")
    with pytest.raises(BadInputError, match="image 100003 has no label"):
        labels_for(tmp_path, ids)
    assert labels_for(tmp_path, [100002]).tolist() == [1]
    with pytest.raises(BadInputError, match="ID 100099 has a label but no image"):
        labels_for(tmp_path, [100002], require_images=True)


def test_full_training_key_columns(tmp_path):
    (tmp_path / "classifications.csv").write_text(
        "ID,is_lens,Einstein_area,numb_pix_lensed_image,flux_lensed_image_in_sigma\n"
        "200001,1,0.52,310,42.5\n200002,0,0,0,\n200003, 1, 1.25e-1, 17, 3.0\n")
    table = read_label_table(tmp_path)
    assert table.ids.tolist() == [200001, 200002, 200003] and table.is_lens.tolist() == [1, 0, 1]
    assert set(table.extra) == {"Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma"}
    np.testing.assert_array_equal(table.extra["Einstein_area"], [0.52, 0.0, 0.125])
    assert np.isnan(table.extra["flux_lensed_image_in_sigma"][1])


def test_test_catalogue_form(tmp_path, space):
    for image_id in (100002, 100004):
        _copy_scene(space, tmp_path, "space", image_id)
    (tmp_path / "SpaceBasedTest_image_catalog.csv").write_text(
        "# Lens finding challenge test catalogue\n#  columns: ID, no_source, ...\n"
        "ID, x_source, no_source\n100002, 0.3, 0\n# a comment between rows\n100004, 0.0, 1\n100005, 0.1, 1\n")
    assert read_labels(tmp_path) == {100002: 1, 100004: 0, 100005: 0}
    assert labels_for(tmp_path, list_ids(tmp_path, "space")).tolist() == [1, 0]
    table = read_label_table(tmp_path / "SpaceBasedTest_image_catalog.csv")
    assert table.path.name == "SpaceBasedTest_image_catalog.csv"
    (tmp_path / "other_image_catalog.csv").write_text("ID,no_source\n1,0\n")
    with pytest.raises(BadInputError, match="several"):
        read_labels(tmp_path)
    (tmp_path / "classifications.csv").write_text("ID,is_lens\n100002,0\n")
    assert read_labels(tmp_path) == {100002: 0}


def test_unknown_survey_and_band(space):
    with pytest.raises(BadInputError, match="unknown survey 'radio'"):
        list_ids(space, "radio")
    with pytest.raises(BadInputError, match="bands 0..0"):
        band_path(space, "space", 1, 100002)
