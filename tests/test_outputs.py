"""Output names of one case: written, cleaned up after a kill, and told apart when scoring."""

from __future__ import annotations

from pathlib import Path

from attnunet.inference.outputs import OutputPaths, predicted_case


def test_output_names() -> None:
    paths = OutputPaths(Path("/o"), "PANCREAS_0001")
    assert paths.segmentation == Path("/o/PANCREAS_0001_seg.nii.gz")
    assert paths.probabilities == Path("/o/PANCREAS_0001_probabilities.nii.gz")
    assert paths.attention("level2") == Path("/o/PANCREAS_0001_attention_level2.nii.gz")
    assert paths.preview == Path("/o/PANCREAS_0001_preview.png")


def test_leftovers_of_one_case_are_removed_and_nothing_else(tmp_path: Path) -> None:
    mine = [
        ".a_seg.nii.gz.x1y2.nii.gz",
        ".a_probabilities.nii.gz.k9.nii.gz",
        ".a_attention_level1.nii.gz.q.nii.gz",
        ".a_preview.png.z.png",
    ]
    others = [
        ".ab_seg.nii.gz.x1.nii.gz",  # another case whose name starts with this one's
        ".b_seg.nii.gz.x1.nii.gz",
        "a_seg.nii.gz",  # finished outputs stay
        "a_preview.png",
    ]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"x")
    OutputPaths(tmp_path, "a").remove_leftovers(["level1", "level2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_predicted_case_tells_segmentations_from_side_outputs() -> None:
    assert predicted_case(Path("PANCREAS_0001_seg.nii.gz")) == "PANCREAS_0001"
    assert predicted_case(Path("case7.nii.gz")) == "case7"  # another tool's prediction
    for side in ("a_probabilities.nii.gz", "a_attention_level3.nii.gz", "a_uncertainty.nii.gz"):
        assert predicted_case(Path(side)) is None
