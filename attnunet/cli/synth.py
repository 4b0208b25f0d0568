"""``attnunet-synth``: write the synthetic pancreas-style CT set (MSD, nnU-Net or NIH layout)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, report_errors
from attnunet.errors import AttnUNetError
from attnunet.phantom import write_dataset
from attnunet.utils.process import prepare_process


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="synth")
@report_errors
def main(cfg: DictConfig) -> None:
    prepare_process()
    try:
        path = write_dataset(
            cfg.output_dir,
            num_cases=cfg.num_cases,
            seed=cfg.seed,
            lesions=cfg.lesions,
            layout=cfg.layout,
            workers=cfg.workers,
            phase=cfg.phase,
            organs=cfg.organs,
        )
    except (FileExistsError, ValueError) as e:
        raise AttnUNetError(str(e)) from None
    print(f"wrote {cfg.num_cases} cases: {path}", flush=True)


if __name__ == "__main__":
    main()
