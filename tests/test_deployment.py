"""attnunet-infer with an exported model file and DICOM-SEG output, end to end as a user runs it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from attnunet.inference.export import export_model
from attnunet.io.dicom import read_series_geometry
from attnunet.io.dicom_writer import write_series
from tests.helpers import CT, make_checkpoint, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CT series from the real scan, cropped around the abdomen for speed."""
    ct = nib.load(CT).slicer[20:100, 15:85, 40:64]
    return write_series(ct, tmp_path_factory.mktemp("dicom") / "patient7")


def test_exported_model_writes_nifti_and_dicom_seg_that_agree(series: Path, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom", reason="DICOM-SEG needs the dicom extra: pip install attnunet[dicom]")
    pytest.importorskip("onnxruntime", reason="format=onnx needs the onnx extra: pip install attnunet[onnx]")
    ckpt = make_checkpoint(tmp_path / "m.ckpt", {0: "background", 1: "pancreas"}, spacing=(6.0, 6.0, 6.0))
    model_file = export_model(ckpt, "onnx", tmp_path / "m.onnx")
    out = tmp_path / "out"
    args = [f"model_file={model_file}", f"input={series}", f"output_dir={out}", "output_format=both"]
    result = run_cli("infer", args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = np.asarray(nib.load(out / "patient7_seg.nii.gz").dataobj)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(out / "patient7_seg.dcm"))
    geometry = read_series_geometry(series)
    sop_of = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): k for k, f in enumerate(geometry.files)}
    pixels = seg.pixel_array if seg.NumberOfFrames > 1 else seg.pixel_array[None]
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        k = sop_of[source.ReferencedSOPInstanceUID]
        np.testing.assert_array_equal(frame.astype(bool), labels[:, :, k].T == 1)


def test_dicom_seg_of_a_nifti_input_and_attention_of_an_exported_model_are_refused(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", {0: "background", 1: "pancreas"}, spacing=(6.0, 6.0, 6.0))
    args = [f"ckpt_path={ckpt}", f"input={CT}", f"output_dir={tmp_path / 'a'}", "output_format=dicom_seg"]
    result = run_cli("infer", args, tmp_path)
    assert result.returncode == 1
    assert "output_format=dicom_seg needs a DICOM series input" in result.stderr
    model_file = export_model(ckpt, "torchscript", tmp_path / "m.pt")
    args = [f"model_file={model_file}", f"input={CT}", f"output_dir={tmp_path / 'b'}", "save_attention=true"]
    result = run_cli("infer", args, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: an exported model gives labels only; attention maps and previews need ckpt_path="
    )
