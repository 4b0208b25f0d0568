"""Run a predictor over many cases: skip finished ones, keep going past bad ones, report."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm import tqdm

from attnunet.errors import AttnUNetError, as_user_error
from attnunet.inference.ensemble import predictive_entropy
from attnunet.inference.io import prepare_output_dir, save_like
from attnunet.inference.outputs import OutputPaths
from attnunet.inference.predictor import ALPHA_STEPS, Prediction, Predictor
from attnunet.inference.preview import render_preview, save_png
from attnunet.inference.read_ahead import read_ahead
from attnunet.io.naming import is_nifti

OUTPUT_FORMATS = ("nifti", "dicom_seg", "both")


@dataclass
class RunReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputChoices:
    """What a run writes per case besides ``<case>_seg.nii.gz`` (see :func:`predict_cases`)."""

    save_probabilities: bool = False
    save_preview: bool = False
    save_attention: bool = False
    output_format: str = "nifti"
    save_uncertainty: bool = False


def predict_cases(
    predictor: Predictor,
    cases: list[tuple[str, Path]],
    output_dir: str | Path,
    save_probabilities: bool = False,
    resume: bool = False,
    save_preview: bool = False,
    save_attention: bool = False,
    output_format: str = "nifti",
    save_uncertainty: bool = False,
) -> RunReport:
    """Write ``<case>_seg.nii.gz`` (+ attention maps, probabilities) for every case.

    The segmentation is written last, so its presence marks a finished case; with ``resume`` such
    cases are skipped (and not read). A failing case is recorded and the run goes on.
    ``save_preview`` adds ``<case>_preview.png`` (CT, predicted contour, attention overlays).
    ``output_format``: ``nifti``, ``dicom_seg`` (``<case>_seg.dcm`` for DICOM series inputs) or
    ``both``. ``save_uncertainty`` adds ``<case>_uncertainty.nii.gz`` (predictive entropy, nats).
    """
    choices = OutputChoices(save_probabilities, save_preview, save_attention, output_format, save_uncertainty)
    if output_format not in OUTPUT_FORMATS:
        raise AttnUNetError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if save_preview and not (predictor.settings.keep_input and predictor.settings.attention):
        raise ValueError("save_preview needs a Predictor with attention=True and keep_input=True")
    out = prepare_output_dir(output_dir)
    inputs = {p.resolve() for _, p in cases}
    report = RunReport()
    todo: list[tuple[str, Path]] = []
    for case, path in cases:
        if resume and OutputPaths(out, case).finished(output_format).is_file():
            report.skipped.append(case)
        elif output_format != "nifti" and is_nifti(path):
            report.failed[case] = str(AttnUNetError(f"output_format={output_format} needs a DICOM series input", path))
            tqdm.write(f"FAILED {case}: {report.failed[case]}")
        else:
            todo.append((case, path))
    bar = tqdm(todo, desc="cases", unit="case")
    for (case, path), reading in zip(bar, read_ahead(predictor, [path for _, path in todo])):
        bar.set_postfix_str(case)
        start = time.perf_counter()
        try:
            predict_and_write(predictor, reading(), path, OutputPaths(out, case), inputs, choices)
        except Exception as e:  # noqa: BLE001 - a folder run must survive any one bad case
            report.failed[case] = str(as_user_error(e, path, "prediction failed"))
            tqdm.write(f"FAILED {case}: {report.failed[case]}")
            continue
        report.done.append(case)
        tqdm.write(f"{case}: {time.perf_counter() - start:.1f} s")
    return report


def predict_and_write(
    predictor: Predictor,
    data: dict[str, Any],
    path: Path,
    paths: OutputPaths,
    inputs: set[Path],
    choices: OutputChoices,
) -> None:
    """One case: the prediction for what :meth:`Predictor.read` gave, then its outputs (the
    segmentation last). A function of its own so that none of a case's volumes outlives it: a
    folder run holds one case's arrays at a time."""
    paths.remove_leftovers(predictor.model.net.attention_names if choices.save_attention else ())
    prediction = predictor.predict(data)
    reference = reference_image(path, prediction)
    if choices.save_preview:
        window = predictor.model.preprocessing.intensity_window
        save_png(render_preview(prediction.input_hu, prediction, window), paths.preview)
    if choices.output_format != "nifti":
        from attnunet.io.dicom_seg import write_dicom_seg  # noqa: PLC0415 - optional extra

        write_dicom_seg(prediction.labels, path, predictor.model.labels, paths.dicom_seg)
    if choices.save_uncertainty:
        save_like(predictive_entropy(prediction.probabilities), reference, paths.uncertainty, inputs)
    if choices.output_format != "dicom_seg":
        write_prediction(prediction, reference, paths, inputs, choices.save_probabilities, choices.save_attention)


def reference_image(path: Path, prediction: Prediction) -> nib.Nifti1Image:
    """The geometry outputs are written on: the input NIfTI itself (its header, qform and sform), or
    for a DICOM series the grid MONAI read it on (RAS affine, voxel order as loaded)."""
    if is_nifti(path):
        return nib.load(path)
    reference = nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), prediction.input_affine)
    reference.set_qform(prediction.input_affine, code=1)  # scanner coordinates, as DICOM's are
    reference.set_sform(prediction.input_affine, code=1)
    return reference


def write_prediction(
    prediction: Prediction,
    reference: nib.Nifti1Image,
    paths: OutputPaths,
    inputs: set[Path],
    save_probabilities: bool,
    save_attention: bool,
) -> None:
    """The side outputs (gate maps, probabilities) side by side in threads, then the segmentation,
    whose presence marks the case finished. Writing is mostly gzip and numpy copies, which run
    outside the GIL, so the files are written in parallel."""
    side: list[tuple[np.ndarray, Path, float | None]] = []
    # Gate maps stay uint8 codes on disk: a quarter of float32's bytes; readers get alpha back.
    for gate, codes in prediction.attention.items() if save_attention else ():
        side.append((codes, paths.attention(gate), 1.0 / ALPHA_STEPS))
    if save_probabilities:
        # (X, Y, Z, K) float32: save_like makes the one copy, into NIfTI's voxel order.
        side.append((np.moveaxis(prediction.probabilities, 0, -1), paths.probabilities, None))
    if side:
        with ThreadPoolExecutor(max_workers=min(len(side), 4)) as pool:
            jobs = [pool.submit(save_like, array, reference, path, inputs, slope) for array, path, slope in side]
            for job in jobs:
                job.result()  # the first failure, as one error, after every write has ended
    save_like(prediction.labels, reference, paths.segmentation, inputs)  # uint8 already
