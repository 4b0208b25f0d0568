"""``attnunet-check``: verify a dataset and write its fingerprint with suggested settings."""

from __future__ import annotations

from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, exit_on_failures, report_errors
from attnunet.data.fingerprint import fingerprint_cases, report, suggest, write_override
from attnunet.utils.atomic import write_text_atomically


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="check")
@report_errors
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir or HydraConfig.get().runtime.output_dir)
    cfg.run_dir = str(run_dir)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    dataset = datamodule.case_list
    fp = fingerprint_cases(dataset.cases, num_labels=len(dataset.labels))
    stats = report(fp)
    if fp.spacings:
        stats["suggested"] = suggest(fp)
        write_override(stats["suggested"], run_dir / "experiment" / "fingerprint.yaml")
    write_text_atomically(run_dir / "fingerprint.yaml", yaml.safe_dump(stats, sort_keys=False))
    print(yaml.safe_dump(stats, sort_keys=False))
    print(f"fingerprint: {run_dir / 'fingerprint.yaml'}")
    if fp.spacings:
        print(f"use it: attnunet-train --config-dir {run_dir} experiment=fingerprint ...")
    exit_on_failures(fp.problems, "problem")


if __name__ == "__main__":
    main()
