"""The phantom generator's output is pinned: a change of code layout must not change a single voxel.

Models are trained on generated phantoms and their cache folder is keyed by the generator version,
so the same ``(seed, index)`` has to give the same arrays until that version is raised. The digests
below were taken from the generator as released; they also change if numpy's random streams or
scipy's interpolation change, which would equally invalidate every cached phantom.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from attnunet.phantom import make_case

# (seed, index, lesions) -> shape and the first 16 hex digits of each array's SHA-256
PINNED = {
    (0, 0, False): (
        (190, 153, 123),
        {"image": "b470fce367a69eb4", "label": "f5c31abf8f3b124a", "tissue": "b942370379de1a29"},
    ),
    (1, 3, True): (
        (192, 161, 131),
        {"image": "15459717ab6e965b", "label": "78e6b7f5e53f23c6", "tissue": "ccb238bfd25668d4"},
    ),
}


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("seed, index, lesions", list(PINNED))
def test_generated_case_is_bit_identical_to_the_released_generator(seed: int, index: int, lesions: bool) -> None:
    shape, expected = PINNED[(seed, index, lesions)]
    case = make_case(seed, index, lesions=lesions)
    assert case.image.dtype == np.int16 and case.label.dtype == case.tissue.dtype == np.uint8
    assert case.image.shape == case.label.shape == case.tissue.shape == shape
    assert {name: digest(getattr(case, name)) for name in expected} == expected
