"""``attnunet-infer``: segment NIfTI volumes with a trained checkpoint."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, exit_on_failures, report_errors, settings_of
from attnunet.errors import AttnUNetError
from attnunet.io.naming import is_nifti
from attnunet.io.voxel_prefetch import start_reading
from attnunet.utils.lean_imports import import_monai
from attnunet.utils.process import prepare_process


def my_share(cases: list, cfg: DictConfig) -> list:
    """Distributed inference: under torchrun (or with ``shard=i/n``) rank i takes every n-th case.

    Outputs are per case, so ranks never write the same file and the union equals a one-process run.
    """
    shard = cfg.get("shard")
    if shard:
        rank, world = (int(v) for v in str(shard).split("/"))
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world:
        raise AttnUNetError(f"shard must be i/n with 0 <= i < n, got {rank}/{world}")
    return cases[rank::world]


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="infer")
@report_errors
def main(cfg: DictConfig) -> None:
    # torch and MONAI load here, not when the module is imported (--help, bad overrides: instant),
    # MONAI without the extras inference never uses (see import_monai), and one input file's
    # voxels are read meanwhile (see voxel_prefetch).
    if is_nifti(cfg.input) and not cfg["continue"]:
        start_reading(cfg.input)
    import_monai()
    from attnunet.inference.configured import predictor_from_config  # noqa: PLC0415
    from attnunet.inference.io import find_inputs  # noqa: PLC0415
    from attnunet.inference.runner import predict_cases  # noqa: PLC0415

    prepare_process(cfg.performance)
    cases = my_share(find_inputs(cfg.input, series=cfg.series), cfg)
    with settings_of("predictor"):
        predictor = predictor_from_config(
            cfg, attention=cfg.save_attention or cfg.save_preview, keep_input=cfg.save_preview
        )
    report = predict_cases(
        predictor,
        cases,
        cfg.output_dir,
        save_probabilities=cfg.save_probabilities,
        resume=cfg["continue"],
        save_preview=cfg.save_preview,
        save_attention=cfg.save_attention,
        output_format=cfg.output_format,
        save_uncertainty=cfg.save_uncertainty,
    )
    print(
        f"{len(report.done)} done, {len(report.skipped)} already finished, {len(report.failed)} failed"
        f" -> {cfg.output_dir}",
        flush=True,
    )
    exit_on_failures(report.failed, "failed")


if __name__ == "__main__":
    main()
