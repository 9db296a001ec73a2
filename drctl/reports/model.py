"""The drill report: one plain record that becomes JSON (cli.md's drill shape) and a
self-contained HTML page.

A report never holds patient names or IDs: the drill works from the manifest (UIDs,
counts, dates) and the nodes' answers (UIDs, counts). Study and instance UIDs appear only
for studies with findings; ``reports.redact_uids`` removes them too.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

# A DICOM UID: a root 0, 1 or 2, then at least two more numeric components without
# leading zeros (2.25.<uuid as a number> has only three), 9 characters or more; not part of
# a longer dotted number (so 127.0.0.1 and version numbers like 1.10.1 stay).
UID_PATTERN = re.compile(
    r"(?<!\w)(?<!\d\.)(?=[\d.]{9,})[0-2](?:\.(?:0|[1-9]\d*)){2,}(?!\w)(?!\.\d)"
)
REDACTED = "[UID redacted]"

# Which evidence of HIPAA 164.308(a)(7) (contingency plan) each report section is.
HIPAA = {
    "verdict": "164.308(a)(7)(ii)(D) testing and revision procedures: a periodic, "
    "recorded test of the contingency plan",
    "objectives": "164.308(a)(7)(ii)(B) disaster recovery plan and (ii)(E) applications and "
    "data criticality analysis: measured recovery time and data loss against "
    "the targets set for this archive",
    "backup": "164.308(a)(7)(ii)(A) data backup plan: the backup restored is a retrievable "
    "copy of the archive, identified here",
    "verification": "164.308(a)(7)(ii)(A) exact copies and (ii)(B) restore procedures: what "
    "the restored node was proven to hold and serve",
    "findings": "164.308(a)(7)(ii)(D) testing: problems the test found, to be corrected",
    "phases": "164.308(a)(7)(ii)(B) disaster recovery plan: each step of the restore and "
    "how long it took",
    "tools": "164.308(a)(7)(ii)(D) testing: the software that ran the test, so it can be repeated",
}


@dataclass
class DrillReport:
    """Everything a drill report shows."""

    drill_id: int
    run_id: int | None
    site: str
    node: str
    repository: str
    snapshot_id: str | None
    snapshot_time: str | None
    pair_time: str | None
    snapshot_status: str | None
    standby: str
    target: dict
    scope: str
    scope_reason: str
    verdict: str
    started_at: str
    ended_at: str | None
    studies_expected: int
    studies_verified: int
    studies_restored: int
    instances_sampled: int
    rto_s: float | None
    rto_projected: bool
    rto_measured_s: float | None
    max_rto: float
    rpo_s: float | None
    rpo_basis: str | None
    max_rpo: float
    phases: dict
    layers: dict
    findings: list[dict]
    tools: dict
    seed: int | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    record_id: str | None = None
    report_path: str | None = None
    json_path: str | None = None
    redacted: bool = False

    @property
    def failing_findings(self) -> list[dict]:
        return [f for f in self.findings if f["kind"] != "extra_study"]

    def to_json(self) -> dict:
        """cli.md's drill document first, then the details."""
        return {
            "drill_id": self.drill_id,
            "snapshot_id": self.snapshot_id,
            "standby": self.standby,
            "state": self.verdict,
            "studies_expected": self.studies_expected,
            "studies_verified": self.studies_verified,
            "findings": [
                {
                    "kind": f["kind"],
                    "study_uid": f.get("study_uid"),
                    "detail": f.get("detail", ""),
                    "layer": f.get("layer"),
                }
                for f in self.findings
            ],
            "rto_s": _round(self.rto_s),
            "rpo_s": _round(self.rpo_s),
            "report": self.report_path,
            "run_id": self.run_id,
            "site": self.site,
            "node": self.node,
            "repository": self.repository,
            "scope": self.scope,
            "scope_reason": self.scope_reason,
            "snapshot_time": self.snapshot_time,
            "pair_time": self.pair_time,
            "snapshot_status": self.snapshot_status,
            "target": self.target,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "studies_restored": self.studies_restored,
            "instances_sampled": self.instances_sampled,
            "rto_projected": self.rto_projected,
            "rto_measured_s": _round(self.rto_measured_s),
            "max_rto": self.max_rto,
            "rpo_basis": self.rpo_basis,
            "max_rpo": self.max_rpo,
            "phases": self.phases,
            "layers": self.layers,
            "tools": self.tools,
            "seed": self.seed,
            "reason": self.reason,
            "notes": self.notes,
            "record_id": self.record_id,
            "report_json": self.json_path,
            "redacted": self.redacted,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def redact_text(text: str) -> str:
    """``text`` with every DICOM UID replaced."""
    return UID_PATTERN.sub(REDACTED, text)


def redacted(report: DrillReport) -> DrillReport:
    """A copy of ``report`` without study or instance UIDs (``reports.redact_uids``)."""
    findings = [
        {
            **f,
            "study_uid": REDACTED if f.get("study_uid") else None,
            "detail": redact_text(f.get("detail", "")),
        }
        for f in report.findings
    ]
    return dataclasses.replace(
        report,
        findings=findings,
        notes=[redact_text(n) for n in report.notes],
        reason=redact_text(report.reason) if report.reason else None,
        layers=_redact_any(report.layers),
        redacted=True,
    )


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_any(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_any(v) for v in value]
    return value
