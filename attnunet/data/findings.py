"""Findings of the dataset audit: what is wrong with which case, and how bad it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attnunet.errors import AttnUNetError

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    """One problem of one case.

    Attributes:
        case: case id (``nih0002``).
        severity: ``error`` (training refuses the dataset unless ``ignore_check=true``) or
            ``warning`` (reported only).
        check: short name of the check that found it (``label_flipped``, ``duplicate``, ...).
        message: one line saying what was found and, where it helps, what to do.
    """

    case: str
    severity: str
    check: str
    message: str

    def order(self) -> tuple[str, str, str]:
        """Sort key: by case, errors first, then by check."""
        return (self.case, self.severity, self.check)

    def line(self) -> str:
        """``<severity>: <case>: <message>``, as the commands print it."""
        return f"{self.severity}: {self.case}: {self.message}"


def by_case(findings: list[Finding]) -> dict[str, list[dict[str, Any]]]:
    """Plain data for ``fingerprint.yaml``: ``{case: [{severity, check, message}, ...]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        out.setdefault(f.case, []).append({k: v for k, v in asdict(f).items() if k != "case"})
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    """The error-level findings."""
    return [f for f in findings if f.severity == ERROR]


def refuse_errors(findings: list[Finding], source: str | Path, override: str) -> None:
    """Raise a one-line :class:`AttnUNetError` naming the first error-level finding, the number of
    cases with one and the ``override`` that accepts them; return when there is none."""
    found = errors(findings)
    if not found:
        return
    cases = len({f.case for f in found})
    raise AttnUNetError(
        f"dataset audit: {cases} case(s) with errors, e.g. {found[0].case}: {found[0].message}; "
        f"run attnunet-check for the full report, fix or remove them, or set {override}",
        source,
    )
