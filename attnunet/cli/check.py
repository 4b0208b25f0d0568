"""``attnunet-check``: verify and audit a dataset, write its fingerprint with settings suggested
from the cases without findings."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, exit_on_failures, report_errors
from attnunet.data.dataset_audit import CaseAudit, audit_case, audit_findings, left_out, scan_signatures
from attnunet.data.findings import by_case, errors
from attnunet.data.fingerprint import LoadedCase, fingerprint_cases, report, settings_basis, suggest, write_override
from attnunet.utils.atomic import write_text_atomically
from attnunet.utils.process import prepare_process


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="check")
@report_errors
def main(cfg: DictConfig) -> None:
    prepare_process()
    run_dir = Path(cfg.run_dir or HydraConfig.get().runtime.output_dir)
    cfg.run_dir = str(run_dir)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    dataset = datamodule.case_list
    test_scans = scan_signatures(Path(cfg.test_root).expanduser()) if cfg.test_root else None
    audits: dict[str, CaseAudit] = {}

    def audit(case_id: str, loaded: LoadedCase) -> None:
        audits[case_id] = audit_case(loaded, dataset.labels)

    fp = fingerprint_cases(dataset.cases, num_labels=len(dataset.labels), on_case=audit)
    findings = audit_findings(audits, dataset.labels, test_scans)
    excluded = left_out(findings)
    stats = report(fp, excluded)
    stats["cases_with_errors"] = len({f.case for f in errors(findings)})
    stats["cases_with_warnings"] = len({f.case for f in findings}) - stats["cases_with_errors"]
    stats["findings"] = by_case(findings)
    if fp.spacings:
        stats["suggested"] = suggest(settings_basis(fp, excluded))
        write_override(stats["suggested"], run_dir / "experiment" / "fingerprint.yaml")
    write_text_atomically(run_dir / "fingerprint.yaml", yaml.safe_dump(stats, sort_keys=False))
    print(yaml.safe_dump(stats, sort_keys=False))
    print(f"fingerprint: {run_dir / 'fingerprint.yaml'}")
    if fp.spacings:
        print(f"use it: attnunet-train --config-dir {run_dir} experiment=fingerprint ...")
    for finding in findings:
        print(finding.line(), file=sys.stderr)
    exit_on_failures(fp.problems, "problem")
    if errors(findings):
        sys.exit(1)


if __name__ == "__main__":
    main()
