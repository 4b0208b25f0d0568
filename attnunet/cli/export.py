"""``attnunet-export``: write a checkpoint's network as ONNX or TorchScript with its JSON sidecar."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, report_errors
from attnunet.inference.export import export_model, sidecar_path
from attnunet.utils.process import prepare_process


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
@report_errors
def main(cfg: DictConfig) -> None:
    prepare_process()
    path = export_model(cfg.ckpt_path, str(cfg.format), cfg.output)
    print(f"wrote {cfg.format} model: {path} (sidecar {sidecar_path(path)})", flush=True)


if __name__ == "__main__":
    main()
