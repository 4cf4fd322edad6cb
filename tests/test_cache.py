"""The packed dataset cache: on a full disk a clear error and nothing left behind, not a SIGBUS mid-fill;
never written into a dataset folder marked read-only."""

import errno
import os

import numpy as np
import pytest

from lensml.errors import LensmlError
from lensml.io.cache import CACHE_FOLDER, cache_dir_for, packed_array


def _build(root, fill):
    source = root / "a.txt"
    source.write_text("x")
    return packed_array("stamps", root, [source], {"norm": "test"}, (64, 32, 32), fill, cache_dir=root / "cache")


def test_cache_blocks_are_allocated_before_the_fill(tmp_path):
    seen = {}

    def fill(array):
        on_disk = next(p for p in (tmp_path / "cache").iterdir() if p.suffix == ".npy")
        seen["blocks"] = on_disk.stat().st_blocks * 512  # a sparse file would have next to none
        array[:] = 1.0

    out = _build(tmp_path, fill)
    assert seen["blocks"] >= out.nbytes
    assert float(out.sum()) == out.size


def test_full_disk_is_one_clear_error_and_leaves_no_file(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    filled = []
    with pytest.raises(LensmlError, match=r"not enough disk space for the cache .*stamps\.npy: it needs 0\.1 GB"):
        _build(tmp_path, filled.append)
    assert filled == []  # the fill never started
    assert list((tmp_path / "cache").iterdir()) == []  # no half-built cache, no temporary file


def test_file_systems_without_preallocation_still_build_the_cache(tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    out = _build(tmp_path, lambda array: array.fill(2.0))
    np.testing.assert_array_equal(out, np.full((64, 32, 32), 2.0, np.float32))


@pytest.fixture
def release(tmp_path):
    """A dataset folder without write bits, as a shared data release is unpacked; root could still write here."""
    folder = tmp_path / "release"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_a_folder_marked_read_only_is_not_written_into_even_by_root(tmp_path, monkeypatch, release):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    writable = tmp_path / "mine"
    writable.mkdir()
    assert cache_dir_for(writable) == writable / CACHE_FOLDER
    elsewhere = cache_dir_for(release)
    assert elsewhere.is_relative_to(tmp_path / "xdg" / "lensml")
    assert elsewhere != cache_dir_for(writable)


@pytest.mark.parametrize("setting", ["", "relative/cache"])
def test_an_empty_or_relative_xdg_cache_home_falls_back_to_the_home(tmp_path, monkeypatch, release, setting):
    monkeypatch.setenv("XDG_CACHE_HOME", setting)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir_for(release).is_relative_to(tmp_path / "home" / ".cache" / "lensml")
