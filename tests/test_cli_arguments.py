"""The command line as users type it: any file name in a path key, every Lightning Trainer argument
as ``trainer.<arg>=``, one-line errors for what Hydra cannot read."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.utils import instantiate
from omegaconf import DictConfig

import attnunet.cli.infer
import attnunet.cli.train
from attnunet.cli.arguments import hydra_quoted, prepare_arguments
from attnunet.cli.common import config_dir
from tests.helpers import CT, make_checkpoint, run_cli

# Names users' files have: spaces, non-ASCII letters, '=', commas, brackets, parentheses, quotes, '#', '~'.
AWKWARD_NAMES = [
    "patient ä 1.nii.gz",
    "患者 2.nii.gz",
    "a=b.nii.gz",
    "scan,1.nii.gz",
    "scan[1].nii.gz",
    "(copy) {2}.nii.gz",
    "it's #3.nii.gz",
    "~tilde.nii.gz",
    "ends in backslash\\",
]


def _compose(config: str, arguments: list[str], **kwargs: bool) -> DictConfig:
    """The config a command composes from ``arguments`` as typed (after :func:`prepare_arguments`)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=config, overrides=prepare_arguments(arguments, **kwargs))


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_existing_paths_reach_the_config_exactly(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"")
    (tmp_path / f"model {name}").write_bytes(b"")
    cfg = _compose("infer", [f"input={name}", f"ckpt_path=model {name}", f"output_dir={tmp_path / name}"])
    assert (cfg.input, cfg.ckpt_path, cfg.output_dir) == (name, f"model {name}", str(tmp_path / name))


@pytest.mark.parametrize("name", ["new ä", "out,v2", "runs [2]", "x=y", "2024", "true"])
def test_paths_that_do_not_exist_yet_are_taken_as_text(name: str) -> None:
    cfg = _compose("evaluate", [f"run_dir={name}", f"data.root={name}/data"])
    assert (cfg.run_dir, cfg.data.root) == (name, f"{name}/data")


def test_without_the_rewriting_hydra_would_refuse_or_misread_them() -> None:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        with pytest.raises(OverrideParseException, match="LexerNoViableAltException: input=patient ä"):
            compose(config_name="infer", overrides=["input=patient ä 1.nii.gz"])
        with pytest.raises(ConfigCompositionException, match="Ambiguous value for argument 'output_dir=out,v2'"):
            compose(config_name="infer", overrides=["input=x", "output_dir=out,v2"])


def test_null_lists_sweeps_and_interpolations_keep_their_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _compose("infer", ["input=x", "ckpt_path=[a ä.ckpt,b.ckpt]", "model_file=null"])
    assert list(cfg.ckpt_path) == ["a ä.ckpt", "b.ckpt"] and cfg.model_file is None
    sweep = ["-m", "output_dir=a,b", "hydra.run.dir=out/${now:%Y}"]
    assert prepare_arguments(sweep) == sweep
    monkeypatch.setenv("ATTNUNET_TEST_HOME", "/data/home")
    cfg = _compose("infer", ["input=x", "output_dir=${oc.env:ATTNUNET_TEST_HOME}/preds"])
    assert cfg.output_dir == "/data/home/preds"


def test_quoting_reads_back_as_the_same_text() -> None:
    for text in ["plain", "it's", "a\\'b", "trailing\\", "\\\\server\\share", 'double "quoted"', " spaced "]:
        cfg = _compose("infer", [f"input={hydra_quoted(text)}"])
        assert cfg.input == text


def test_rewriting_is_idempotent_for_ddp_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "patient ä 1.nii.gz").write_bytes(b"")
    once = prepare_arguments(
        ["input=patient ä 1.nii.gz", "trainer.limit_train_batches=2", "hydra.run.dir=ä"], trainer_arguments=True
    )
    assert once == ["input='patient ä 1.nii.gz'", "++trainer.limit_train_batches=2", "hydra.run.dir='ä'"]
    assert prepare_arguments(once, trainer_arguments=True) == once


def test_trainer_arguments_missing_from_the_config_are_accepted(tmp_path: Path) -> None:
    arguments = [f"run_dir={tmp_path}", "trainer=cpu", "trainer.precision=32-true", "trainer.max_epochs=3"]
    arguments += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=3", "trainer.gradient_clip_val=0.5"]
    refused = pytest.raises(ConfigCompositionException, match="Could not override 'trainer.limit_train_batches'")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"), refused:
        compose(config_name="train", overrides=arguments)
    cfg = _compose("train", arguments, trainer_arguments=True)
    assert "limit_train_batches" not in _compose("train", [f"run_dir={tmp_path}"]).trainer  # not shipped
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert (trainer.limit_train_batches, trainer.limit_val_batches, trainer.gradient_clip_val) == (2, 3, 0.5)
    assert trainer.max_epochs == 3


def test_other_commands_do_not_take_trainer_arguments() -> None:
    assert prepare_arguments(["trainer.limit_train_batches=2"]) == ["trainer.limit_train_batches=2"]


def test_unknown_trainer_argument_names_the_nearest(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["attnunet-train", "trainer.limit_train_batchs=2"])
    with pytest.raises(SystemExit) as exited:
        attnunet.cli.train.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: trainer.limit_train_batchs: not an argument of Lightning's Trainer; did you mean")
    assert "limit_train_batches" in err


def test_a_value_hydra_cannot_parse_is_one_line_with_the_form_that_works(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(sys, "argv", ["attnunet-infer", "input=x", "debug=bäd"])
    with pytest.raises(SystemExit) as exited:
        attnunet.cli.infer.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        "error: debug: Hydra cannot parse the value 'bäd' (token recognition error at: 'ä'); "
        "as text it is written \"debug='bäd'\"\n"
    )
    shown = shlex.split(err.rsplit(" ", 1)[-1])  # what the user pastes, after the shell's quote removal
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        assert compose(config_name="infer", overrides=["input=x", *shown]).debug == "bäd"


@pytest.mark.slow
def test_infer_with_awkward_names_everywhere(tmp_path: Path) -> None:
    folder = tmp_path / "Müller, J. [CT] (2)"
    folder.mkdir()
    scan = folder / "patient ä 1=a,b.nii.gz"
    img = nib.load(CT)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[40:80, 30:70, 50:74], img.affine), scan)
    checkpoint = make_checkpoint(tmp_path / "modèle #1.ckpt")
    out = tmp_path / "résultats, v2 [final]"
    result = run_cli("infer", [f"ckpt_path={checkpoint}", f"input={scan}", f"output_dir={out}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    seg = nib.load(out / "patient ä 1=a,b_seg.nii.gz")
    assert seg.shape == (40, 40, 24)
    assert [p.name for p in folder.iterdir()] == [scan.name]  # input untouched, nothing written beside it
