"""The real ``attnunet-train`` command, end to end, as a user runs it."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.postprocessing import labels_that_gain
from tests.helpers import CT, PANCREAS, compose_train, run_attnunet

pytestmark = pytest.mark.slow


def scalars(run: Path, tag: str) -> list[float]:
    """The values TensorBoard holds for ``tag`` in ``run``, in step order."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_smoke_run_produces_the_run_dir_layout(smoke_run) -> None:
    run, result, cache = smoke_run
    for rel in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", ".hydra/config.yaml"):
        assert (run / rel).is_file(), rel
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    last_line = result.stdout.strip().splitlines()[-1]
    best = re.escape(str(run / "checkpoints" / "best.ckpt"))
    printed = re.fullmatch(rf"best checkpoint: {best}  val/dice: (\S+)", last_line)
    assert printed, last_line
    # The best of the validations the run logged (one per epoch), not any number.
    assert len(scalars(run, "val/dice")) == 2
    assert float(printed.group(1)) == pytest.approx(max(scalars(run, "val/dice")), abs=5e-5)
    assert (next(cache.iterdir()) / "dataset.json").is_file()  # default data generated on first use


def test_checkpoint_is_plain_data_and_self_describing(smoke_run) -> None:
    run, _, _ = smoke_run
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    meta = ckpt["attnunet"]
    assert meta["labels"] == {"0": "background", "1": "pancreas"}
    assert meta["model"]["channels"] == [4, 8, 16] and meta["model"]["num_classes"] == 2
    assert meta["preprocessing"]["spacing"] == [4.0, 4.0, 4.0]
    assert meta["sliding_window"]["roi_size"] == [32, 32, 32]
    # The largest-component choice made on the best epoch's validation, with the figures it was made
    # from: those TensorBoard logged for that validation (the rule itself: test_postprocessing).
    chosen, dice, kept = (
        meta["postprocessing"][k] for k in ("largest_component", "val_dice", "val_dice_largest_component")
    )
    best = max(range(2), key=lambda i: scalars(run, "val/dice")[i])
    assert set(dice) == set(kept) == {"1"}
    assert dice["1"] == pytest.approx(scalars(run, "val/dice_pancreas")[best], abs=1e-6)
    assert kept["1"] == pytest.approx(scalars(run, "val/dice_largest_component")[best], abs=1e-6)
    assert chosen == labels_that_gain({1: dice["1"]}, {1: kept["1"]})


def test_tensorboard_has_curves_and_attention_images(smoke_run) -> None:
    run, _, _ = smoke_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars, images = events.Tags()["scalars"], events.Tags()["images"]
    for tag in ("train/loss_epoch", "val/dice", "val/dice_pancreas", "attention_contrast/level1"):
        assert tag in scalars
    assert any(t.startswith("attention/") and t.endswith("/level1") for t in images)
    assert any(t.startswith("val/overlay/") for t in images)


def test_resume_from_last_continues_the_same_run(smoke_run, tmp_path: Path) -> None:
    run, _, cache = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = torch.load(copy / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    result = run_attnunet(
        ["train", "experiment=smoke", f"hydra.run.dir={copy}", "ckpt_path=last", "trainer.max_epochs=3"],
        tmp_path,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after = torch.load(copy / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert before["epoch"] == 1 and after["epoch"] == 2
    assert after["global_step"] == before["global_step"] + before["global_step"] // 2


def test_missing_resume_checkpoint_is_a_one_line_error(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run  # the phantoms are generated before the checkpoint is looked for
    result = run_attnunet(["train", "experiment=smoke", "ckpt_path=/nonexistent/x.ckpt"], tmp_path, cache)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1] == "error: /nonexistent/x.ckpt: checkpoint to resume from does not exist"
    )


def test_resume_from_a_pickled_checkpoint_is_a_one_line_error(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "payload": argparse.Namespace(run="code")}, evil)
    result = run_attnunet(["train", "experiment=smoke", f"ckpt_path={evil}"], tmp_path, cache)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {evil}: refused: not a plain-data checkpoint (would need to unpickle argparse.Namespace)"
    )
    assert "Traceback" not in result.stderr


def test_run_without_validation_says_so_and_names_last_checkpoint(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    args = ["train", "experiment=smoke", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=5"]
    result = run_attnunet(args, tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "outputs" / "train").iterdir())
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert result.stdout.strip().splitlines()[-1] == (
        f"no validation ran, so there is no best checkpoint; last checkpoint: {last}"
    )


def test_normal_runs_print_no_dependency_warnings(smoke_run, tmp_path: Path) -> None:
    """train (the smoke run), infer and evaluate: no FutureWarning/UserWarning/deprecation notices."""
    run, train, cache = smoke_run
    ckpt = run / "checkpoints" / "best.ckpt"
    infer = run_attnunet(
        ["infer", f"ckpt_path={ckpt}", f"input={CT}", f"output_dir={tmp_path / 'p'}", "save_attention=true"],
        tmp_path,
        cache,
    )
    evaluate = run_attnunet(
        ["evaluate", f"ckpt_path={ckpt}", "data.max_cases=4", "data.preprocessing.spacing=[4,4,4]"], tmp_path, cache
    )
    for result in (train, infer, evaluate):
        assert result.returncode == 0, result.stderr[-3000:]
        output = result.stdout + result.stderr
        for noise in ("Warning:", "WARNING", "deprecated"):
            assert noise not in output, output[-3000:]


def test_synth_command_writes_an_msd_dataset(tmp_path: Path) -> None:
    result = run_attnunet(["synth", f"output_dir={tmp_path / 'ds'}", "num_cases=2", "seed=5"], tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ds" / "dataset.json").is_file()
    assert len(list((tmp_path / "ds" / "imagesTr").glob("*.nii.gz"))) == 2


def test_weight_averaging_validates_and_saves_the_average_and_resumes(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    ema = "callbacks.weight_averaging={_target_:attnunet.training.weight_averaging.EMAWeights,decay:0.5}"
    one_epoch = ["train", "experiment=smoke", ema, f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_epochs=1"]
    result = run_attnunet(one_epoch, tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert not torch.equal(averaged["net.head.weight"], raw["net.head.weight"])  # the average, not the last step
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert torch.equal(model.net.head.weight, averaged["net.head.weight"])
    resumed = run_attnunet(
        [
            "train",
            "experiment=smoke",
            ema,
            f"hydra.run.dir={tmp_path / 'run'}",
            "ckpt_path=auto",  # as a requeued job resumes: its own last checkpoint, found
            "trainer.max_epochs=2",
        ],
        tmp_path,
        cache,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["epoch"] == 1 and not torch.equal(after["state_dict"]["net.head.weight"], averaged["net.head.weight"])


def test_2d_model_trains_on_axial_slices(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    args = ["experiment=smoke", "model=attention_unet_2d", "model.channels=[4,8,16]", "trainer.max_epochs=1"]
    result = run_attnunet(["train", *args, "data.patch_size=[32,32,1]", "data.samples_per_volume=4"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "outputs" / "train").iterdir())
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["attnunet"]["model"]["spatial_dims"] == 2
    assert ckpt["state_dict"]["net.head.weight"].ndim == 4  # a 2D convolution

    mismatch = run_attnunet(["train", *args, "data.patch_size=[32,32,32]"], tmp_path, cache)
    assert mismatch.returncode == 1
    assert "model.spatial_dims=2 needs data.patch_size ending in 1" in mismatch.stderr


def test_gated_bottleneck_trains_and_its_gate_is_in_tensorboard(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    args = ["experiment=smoke", "model=attention_unet_gated", "model.channels=[4,8,16]", "model.bottleneck_heads=2"]
    result = run_attnunet(["train", *args, "trainer.max_epochs=1"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "outputs" / "train").iterdir())
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert any(t.endswith("/bottleneck") for t in events.Tags()["images"])
    assert "attention_contrast/bottleneck" in events.Tags()["scalars"]


def test_ablation_is_one_command_and_writes_a_report(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    tiny = [
        "data.num_cases=4",
        "data.preprocessing.spacing=[4.0,4.0,4.0]",
        "data.patch_size=[32,32,32]",
        "data.val_fraction=0.25",
        "data.num_workers=0",
        "model.channels=[4,8,16]",
        "model.bottleneck_heads=2",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "hydra.sweeper.params.seed=1",
        f"hydra.callbacks.ablation_report.real_image={CT}",
        f"hydra.callbacks.ablation_report.real_mask={PANCREAS}",
    ]
    result = run_attnunet(["train", "experiment=ablation", *tiny], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = list((tmp_path / "outputs" / "ablation").iterdir())
    report = (sweep / "report.md").read_text()
    for variant in ("unet", "attention_unet", "attention_unet_gated"):
        assert f"| {variant} | 1 |" in report
    assert "## Paired difference to unet" in report and "| attention_unet | 1 x 1 |" in report
    for gate in ("level1", "bottleneck"):
        assert f"| attention_unet_gated | {gate} |" in report
    assert "| unet | level" not in report  # no gates, no contrast row
    assert (sweep / "report.png").stat().st_size > 1000
    picture = np.asarray(Image.open(sweep / "report_attention.png"))
    assert picture.shape[0] > 3 * 256  # one row per variant on the real CT
    runs = json.loads((sweep / "report.json").read_text())["runs"]
    params = {r["variant"]: r["parameters"] for r in runs}
    assert params["unet"] < params["attention_unet"] < params["attention_unet_gated"]


def test_checkpoint_stores_the_split_and_evaluate_scores_its_validation_cases(smoke_run, tmp_path: Path) -> None:
    """Evaluate mode 1 scores the validation cases the run held out, whatever split the current
    config would draw (another seed here), so training cases never leak into the scores."""
    from hydra.utils import instantiate

    from attnunet.evaluation.on_split import evaluate_on_split
    from attnunet.inference.predictor import Predictor

    run, _, cache = smoke_run
    stored = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["attnunet"]["split"]
    assert stored == json.loads((run / "splits.json").read_text())[0]
    assert len(stored["val"]) == 1 and not set(stored["train"]) & set(stored["val"])

    root = next(p for p in cache.iterdir() if p.name.startswith("synthetic"))
    for seed in range(1, 20):  # a seed whose own split would validate on another case
        cfg = compose_train(["experiment=smoke", f"data.split_seed={seed}", f"run_dir={tmp_path / str(seed)}"])
        cfg.data.root = str(root)
        datamodule = instantiate(cfg.data)
        if [c["case_id"] for c in datamodule.split()[1]] != stored["val"]:
            break
    else:
        pytest.fail("no seed gives another split")
    predictor = Predictor(load_checkpoint(run / "checkpoints" / "best.ckpt"))
    rows = evaluate_on_split(predictor, datamodule, "val", 2.0, run / "checkpoints" / "best.ckpt")
    assert sorted({r["case"] for r in rows}) == stored["val"]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("model.norm=group", "error: model: norm must be one of ('instance', 'batch'), got 'group'"),
        ("model.activation=gelu", "error: model: activation must be one of ('relu', 'leaky_relu'), got 'gelu'"),
        ("data.preprocessing.normalization=foo", "error: data: normalization must be window or zscore, got 'foo'"),
        ("+data.preprocessing.spacingg=[2,2,2]", "error: data: unknown preprocessing settings ['spacingg']"),
        ("trainer.max_epochs=-5", "error: trainer: `max_epochs` must be a non-negative integer or -1"),
    ],
)
def test_bad_setting_is_a_one_line_error_naming_its_group(setting: str, message: str, smoke_run, tmp_path) -> None:
    _, _, cache = smoke_run
    result = run_attnunet(["train", "experiment=smoke", setting], tmp_path, cache)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr


def test_fine_tuning_starts_from_another_runs_weights_and_records_its_flips(smoke_run, tmp_path: Path) -> None:
    run, _, cache = smoke_run
    source = run / "checkpoints" / "best.ckpt"
    args = ["train", "experiment=smoke", f"init_weights={source}", "freeze_encoder_epochs=1", "trainer.max_epochs=1"]
    result = run_attnunet([*args, "data.augmentation.flip_prob=0.5"], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    n = len(load_checkpoint(source).net.state_dict())
    assert f"init_weights: loaded {n} of {n} tensors from {source}" in result.stdout
    tuned = next((tmp_path / "outputs" / "train").iterdir()) / "checkpoints" / "last.ckpt"
    before, after = load_checkpoint(source).net.state_dict(), load_checkpoint(tuned).net.state_dict()
    assert torch.equal(before["encoder.0.0.weight"], after["encoder.0.0.weight"])  # frozen in its one epoch
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert load_checkpoint(tuned).meta["flip_axes"] == [0, 1, 2] and load_checkpoint(source).meta["flip_axes"] == []

    wider = run_attnunet(
        ["train", "experiment=smoke", f"init_weights={source}", "model.channels=[8,16,32]"], tmp_path, cache
    )
    assert wider.returncode == 1 and "init_weights: another architecture: channels=[4, 8, 16]" in wider.stderr
