"""Run a predictor on a labelled split of a dataset and score every case (evaluate mode 1)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from attnunet.data.datamodule import SegmentationDataModule
from attnunet.data.labels import apply_lookup, lookup_by_name
from attnunet.errors import AttnUNetError
from attnunet.evaluation.report import LabelMap, check_label_values, read_label_map, relabelled, score_pair
from attnunet.inference.ensemble import mean_uncertainty
from attnunet.inference.predictor import Prediction, Predictor
from attnunet.inference.read_ahead import read_ahead

log = logging.getLogger(__name__)

# Extra per-case columns from a prediction and its reference: (prediction, reference, image path,
# reference path) -> {column: value}, e.g. attention_contrast.contrast_columns.
CaseColumns = Callable[[Prediction, LabelMap, Path, Path], dict[str, float]]


def stored_split_cases(
    datamodule: SegmentationDataModule, ids: list[str], split: str, ckpt_path: str | Path
) -> list[dict[str, str]]:
    """The cases of the split stored in the checkpoint at training time (whatever seed, fold or
    fraction the current config says), so no training case is ever scored as a validation case."""
    by_id = {c["case_id"]: c for c in datamodule.case_list.cases}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise AttnUNetError(
            f"the checkpoint's {split} cases {missing[:3]} are not in {datamodule.case_list.source} "
            "(another dataset? use split=all)",
            ckpt_path,
        )
    return [by_id[i] for i in ids]


def evaluate_on_split(
    predictor: Predictor,
    datamodule: SegmentationDataModule,
    split: str,
    tolerance_mm: float,
    ckpt_path: str | Path = "checkpoint",
    case_columns: CaseColumns | None = None,
) -> list[dict[str, Any]]:
    """Metric rows for every case of ``split`` (``val``, ``train`` or ``all``), scored on each
    case's own grid after the same inference as ``attnunet-infer``. ``val``/``train`` are the
    checkpoint's stored case ids when it has them. A model with more classes than the dataset is
    scored on the dataset's classes, matched by name; its other classes count as background.
    ``case_columns`` adds its columns to every row of a case."""
    datamodule.prepare_data()
    labels = datamodule.labels
    to_dataset = lookup_by_name(predictor.model.labels, labels, ckpt_path)
    extra = [name for value, name in predictor.model.labels.items() if value != 0 and to_dataset[value] == 0]
    if extra:
        log.info("the dataset has no %s: scored as background", ", ".join(extra))
    if split not in ("train", "val", "all"):
        raise AttnUNetError(f"split must be val, train or all, got {split!r}")
    if split == "all":
        cases = datamodule.case_list.cases
    elif len({json.dumps(m.meta.get("split"), sort_keys=True) for m in predictor.models}) > 1:
        raise AttnUNetError(
            f"the ensemble's members were trained on different cases (k folds?), so its {split} split is "
            "not one split of them all; score held-out cases with split=all",
            ckpt_path,
        )
    elif predictor.model.meta.get("split"):
        cases = stored_split_cases(datamodule, predictor.model.meta["split"][split], split, ckpt_path)
    else:  # checkpoints from before the split was stored: rebuilt from the data settings
        log.warning("%s holds no case split; using the one data.* gives (pass the run's splits_file)", ckpt_path)
        train, val = datamodule.split()
        cases = train if split == "train" else val
    rows: list[dict[str, Any]] = []
    images = [Path(case["image"]) for case in cases]
    for case, reading in zip(tqdm(cases, desc="cases", unit="case"), read_ahead(predictor, images)):
        ref_path, image_path = Path(case["label"]), Path(case["image"])
        reference = relabelled(read_label_map(ref_path), datamodule.label_lookup)
        check_label_values(reference, labels, ref_path)
        prediction = predictor.predict(reading())
        scored = score_pair(
            case["case_id"],
            apply_lookup(prediction.labels, to_dataset),
            prediction.input_affine,
            image_path,
            reference,
            ref_path,
            labels,
            tolerance_mm,
        )
        extra = {"uncertainty": mean_uncertainty(prediction.probabilities_in_box())}  # 0 outside the box
        if case_columns is not None:
            extra.update(case_columns(prediction, reference, image_path, ref_path))
        rows += [{**row, **extra} for row in scored]
    return rows
