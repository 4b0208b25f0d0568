"""attnunet-infer starts quickly: light entry-point import, MONAI without unused extras, the input
read during the imports; none of it changes what is read (the exit without a final garbage
collection: tests/test_process.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnunet.data.transforms import load_images
from attnunet.io import voxel_prefetch
from attnunet.utils.lean_imports import UNUSED_BY_ATTNUNET


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_infer_entry_point_loads_no_heavy_library() -> None:
    loaded = run_python(
        "import sys, attnunet.cli.infer\n"
        "print(sorted(m for m in ('torch', 'monai', 'pytorch_lightning', 'matplotlib', 'scipy', 'nibabel')"
        " if m in sys.modules))"
    )
    assert loaded == "[]"


def test_monai_is_imported_without_the_unused_extras_which_still_import_afterwards() -> None:
    out = run_python(
        "import sys\n"
        "from attnunet.utils.lean_imports import import_monai\n"
        "import_monai()\n"
        "import monai.transforms, monai.inferers\n"
        f"print([m for m in {UNUSED_BY_ATTNUNET!r} + ('scipy.stats',) if m in sys.modules])\n"
        "import matplotlib.pyplot, scipy.signal, scipy.stats\n"
        "print(matplotlib.pyplot.figure is not None, scipy.signal.hilbert is not None)"
    )
    assert out.splitlines() == ["[]", "True True"]


def scaled_ct(path: Path) -> Path:
    """A gzipped int16 CT with a slope and intercept, as scanners' converters write them."""
    rng = np.random.default_rng(1)
    image = nib.Nifti1Image(rng.integers(-1024, 2000, (23, 19, 11)).astype(np.int16), np.diag([-0.8, -0.8, 2.5, 1]))
    image.header.set_slope_inter(0.5, -12.0)
    nib.save(image, path)
    return path


def read_image(path: Path) -> np.ndarray:
    return load_images(["image"])({"image": str(path)})["image"].numpy()


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_prefetched_voxels_are_taken_and_equal_a_plain_read(tmp_path: Path, name: str) -> None:
    path = scaled_ct(tmp_path / name)
    plain = read_image(path)
    np.testing.assert_array_equal(plain, nib.load(path).get_fdata())  # slope and intercept applied
    voxel_prefetch.start_reading(path)
    assert voxel_prefetch._pending  # noqa: SLF001 - the read is held until the loader takes it
    prefetched = read_image(path)
    assert not voxel_prefetch._pending  # noqa: SLF001
    assert prefetched.dtype == np.float32 and prefetched.flags.c_contiguous
    np.testing.assert_array_equal(prefetched, plain)


def test_a_file_changed_after_the_read_began_is_read_again(tmp_path: Path) -> None:
    path = scaled_ct(tmp_path / "ct.nii.gz")
    voxel_prefetch.start_reading(path)
    voxel_prefetch._pending[next(iter(voxel_prefetch._pending))].result()  # noqa: SLF001 - wait for it
    replaced = np.full((4, 5, 6), 7, np.int16)
    nib.save(nib.Nifti1Image(replaced, np.eye(4)), path)
    os.utime(path, ns=(1, 1))  # another modification time even on a coarse clock
    np.testing.assert_array_equal(read_image(path), replaced)


def test_a_failed_prefetch_falls_back_to_the_loader_and_its_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.nii.gz"
    good = scaled_ct(tmp_path / "good.nii.gz").read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated gzip stream
    voxel_prefetch.start_reading(path)
    # The loader's own error for a cut gzip stream, as without a prefetch.
    with pytest.raises(EOFError, match="Compressed file ended before the end-of-stream marker was reached"):
        read_image(path)
    assert not voxel_prefetch._pending  # noqa: SLF001


def test_a_pending_read_of_another_file_stays_pending(tmp_path: Path) -> None:
    first, second = scaled_ct(tmp_path / "a.nii.gz"), scaled_ct(tmp_path / "b.nii.gz")
    voxel_prefetch.start_reading(second)
    read_image(first)
    assert len(voxel_prefetch._pending) == 1  # noqa: SLF001
    np.testing.assert_array_equal(read_image(second), read_image(first))
    assert not voxel_prefetch._pending  # noqa: SLF001
