"""The site report: backups, RPO and RTO history, drills with their findings, repository
checks and the HIPAA 164.308(a)(7) evidence of a period, as one plain record that becomes
JSON (``drctl --json report``) and a self-contained HTML page (:mod:`site_html`).

The caller (``drctl.actions.report``) gathers plain records from the catalog; this module
only shapes them. No patient names or IDs ever reach it. Study UIDs appear only in drill
findings; every other text (run reasons, problems) has its UIDs replaced, and with
``reports.redact_uids`` the findings lose theirs too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from drctl.catalog.queries import GOOD_RUN_STATES, GOOD_SNAPSHOTS
from drctl.reports import model
from drctl.reports.html import format_seconds
from drctl.reports.model import REDACTED

# UUID-derived UIDs (2.25.<decimal UUID>) that model.UID_PATTERN leaves alone: after
# another dotted number (3.2.25.<n>), with a leading zero (2.25.0<n>) or before a
# component with one (2.25.<n>.0<m>); the site report redacts those too.
UUID_UID = re.compile(r"\b2\.25\.\d{6,}\b")


@dataclass(frozen=True)
class Requirement:
    """One implementation specification of HIPAA 164.308(a)(7) and the run kinds that
    evidence it."""

    ref: str
    title: str
    evidence: str
    kinds: tuple[str, ...]


HIPAA_7 = (
    Requirement(
        "164.308(a)(7)(ii)(A)",
        "Data backup plan",
        "Retrievable exact copies of the archive: storage snapshots paired with index "
        "copies and study manifests, in an encrypted repository whose integrity is checked.",
        ("backup", "index_copy", "check"),
    ),
    Requirement(
        "164.308(a)(7)(ii)(B)",
        "Disaster recovery plan",
        "Procedures to restore the archive, exercised: restore drills, study restores, "
        "standby replication, failover and failback.",
        ("drill", "restore", "replicate", "failover", "failback"),
    ),
    Requirement(
        "164.308(a)(7)(ii)(C)",
        "Emergency mode operation plan",
        "Operation from the standby site while the primary is lost: the standby kept "
        "current by replication, failovers to it and failbacks from it.",
        ("replicate", "failover", "failback"),
    ),
    Requirement(
        "164.308(a)(7)(ii)(D)",
        "Testing and revision procedures",
        "Periodic tests of the contingency plan: restore drills with their verdicts and "
        "findings, repository integrity checks.",
        ("drill", "check"),
    ),
    Requirement(
        "164.308(a)(7)(ii)(E)",
        "Applications and data criticality analysis",
        "Recovery targets set for this archive, and each drill's measured recovery time "
        "and data loss against them.",
        ("drill",),
    ),
)
RUNS_SHOWN = 8


@dataclass
class SiteReport:
    """Everything the site report shows (times are ISO strings)."""

    site: str
    generated_at: str
    since: str | None
    until: str
    targets: dict
    verdict: dict
    summary: dict
    nodes: list[str]
    snapshots: list[dict]
    rpo: dict[str, list[list]]
    drills: list[dict]
    checks: list[dict]
    backups: list[dict]
    evidence: list[dict]
    redacted: bool = False
    report_path: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "report": self.report_path,
            "generated_at": self.generated_at,
            "since": self.since,
            "until": self.until,
            "verdict": self.verdict,
            "targets": self.targets,
            "summary": self.summary,
            "nodes": self.nodes,
            "snapshots": self.snapshots,
            "rpo": self.rpo,
            "drills": self.drills,
            "checks": self.checks,
            "backups": self.backups,
            "hipaa": self.evidence,
            "redacted": self.redacted,
            "notes": self.notes,
        }


@dataclass
class Inputs:
    """What the report is built from (plain records; see ``drctl.actions.report``)."""

    site: str
    now: datetime
    since: datetime | None
    status: dict  # drctl status's document
    snapshots: list[dict]  # every snapshot (forgotten ones too), oldest first
    drills: list[dict]  # in the period, newest first, each with its "findings" list
    checks: list[dict]  # check runs in the period, newest first
    backups: list[dict]  # backup runs in the period, newest first
    runs: dict[str, list[dict]]  # kind -> newest runs of that kind in the period
    counts: dict[tuple[str, str], int]  # (kind, state) -> runs in the period
    redact_uids: bool = False


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def rpo_history(
    snapshots: list[dict], node: str, since: datetime | None, until: datetime
) -> list[list]:
    """The image RPO of ``node`` over time: [[iso time, seconds], ...], a sawtooth that
    drops when a restorable snapshot is taken (to the age of its consistent pair) and
    grows until the next one. Starts at ``since`` (from the newest snapshot before it) or
    at the first snapshot."""
    good = sorted(
        (
            (_t(s["time"]), _t(s.get("pair_time") or s["time"]))
            for s in snapshots
            if s["node"] == node and s["status"] in GOOD_SNAPSHOTS
        ),
        key=lambda pair: pair[0],
    )
    points: list[list] = []
    reference: datetime | None = None

    def add(at: datetime) -> None:
        assert reference is not None
        points.append([at.isoformat(), round(max(0.0, (at - reference).total_seconds()), 3)])

    for taken, pair in good:
        if taken > until:
            break
        if since is not None and taken < since:
            reference = pair if reference is None else max(reference, pair)
            continue
        if reference is not None:
            if not points and since is not None:
                add(since)
            add(taken)  # the RPO just before this snapshot
        reference = pair if reference is None else max(reference, pair)
        add(taken)
    if reference is not None:
        if not points and since is not None:
            add(since)
        add(until)
    return points


def redact_text(text: str) -> str:
    """``text`` with every DICOM UID replaced."""
    return UUID_UID.sub(REDACTED, model.redact_text(text))


def _redact(text: str | None) -> str | None:
    return redact_text(text) if text else text


def _finding(f: dict, redact: bool) -> dict:
    uid = f.get("study_uid")
    return {
        "kind": f["kind"],
        "study_uid": (REDACTED if uid else None) if redact else uid,
        "detail": redact_text(f.get("detail") or "") if redact else f.get("detail") or "",
    }


def _drill(d: dict, redact: bool) -> dict:
    keys = (
        "drill_id",
        "run_id",
        "started_at",
        "ended_at",
        "node",
        "repository",
        "snapshot_id",
        "standby",
        "scope",
        "state",
        "studies_expected",
        "studies_verified",
        "instances_sampled",
        "rto_s",
        "rto_projected",
        "rpo_s",
    )
    doc = {k: d.get(k) for k in keys}
    doc["reason"] = _redact(d.get("reason"))
    doc["findings"] = [_finding(f, redact) for f in d.get("findings") or []]
    return doc


def _run(r: dict) -> dict:
    return {**r, "reason": _redact(r.get("reason"))}


def _evidence(inputs: Inputs, targets: dict) -> list[dict]:
    rows = []
    for req in HIPAA_7:
        by_state: dict[str, int] = {}
        for (kind, state), n in inputs.counts.items():
            if kind in req.kinds:
                by_state[state] = by_state.get(state, 0) + n
        total = sum(by_state.values())
        good = sum(by_state.get(s, 0) for s in GOOD_RUN_STATES)
        newest = sorted(
            (r for kind in req.kinds for r in inputs.runs.get(kind, [])),
            key=lambda r: r["run_id"],
            reverse=True,
        )[:RUNS_SHOWN]
        evidence = req.evidence
        if req.ref.endswith("(E)"):
            evidence += (
                f" Targets: RPO {format_seconds(targets['max_rpo_s'])}, RTO "
                f"{format_seconds(targets['max_rto_s'])} (drill.max_rpo, drill.max_rto)."
            )
        rows.append(
            {
                "requirement": req.ref,
                "title": req.title,
                "evidence": evidence,
                "kinds": list(req.kinds),
                "runs_total": total,
                "runs_by_state": by_state,
                "runs": [
                    {
                        k: r[k]
                        for k in ("run_id", "kind", "state", "node", "repository", "started_at")
                    }
                    for r in newest
                ],
                "status": "evidenced" if good else ("attention" if total else "no evidence"),
            }
        )
    return rows


def _summary(inputs: Inputs, snapshots: list[dict], drills: list[dict]) -> dict:
    def states(kind: str) -> dict[str, int]:
        return {s: n for (k, s), n in inputs.counts.items() if k == kind}

    newest = snapshots[-1] if snapshots else None
    last_drill = drills[0] if drills else None
    return {
        "backups": states("backup"),
        "drills": states("drill"),
        "checks": states("check"),
        "snapshots": len(snapshots),
        "drill_verdicts": {
            v: sum(1 for d in drills if d["state"] == v) for v in {d["state"] for d in drills}
        },
        "newest_snapshot": None
        if newest is None
        else {k: newest.get(k) for k in ("snapshot_id", "node", "time", "studies", "bytes")},
        "last_drill": None
        if last_drill is None
        else {k: last_drill[k] for k in ("drill_id", "state", "rto_s", "rpo_s", "started_at")},
        "current_rpo_s": {
            n["node"]: n["rpo"]["image_s"] for n in inputs.status["nodes"] if n.get("rpo")
        },
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def problem_counts(breaches: int, problems: int) -> str:
    """``"1 target breached, 2 other problems"``, ``"3 problems"``."""
    others = problems - breaches
    if not breaches:
        return plural(others, "problem")
    text = f"{plural(breaches, 'target')} breached"
    return text + (f", {plural(others, 'other problem')}" if others else "")


def _verdict(inputs: Inputs) -> dict:
    status = inputs.status
    problems = [{**p, "message": redact_text(p["message"])} for p in status["problems"]]
    if status["ok"]:
        headline = "Recoverable: every target met"
    else:
        headline = "Attention: " + problem_counts(status["breaches"], len(problems))
    return {
        "ok": status["ok"],
        "headline": headline,
        "breaches": status["breaches"],
        "problems": problems,
    }


def build(inputs: Inputs) -> SiteReport:
    """The report of ``inputs`` (redacted as configured)."""
    until = inputs.now.replace(microsecond=0)  # the page shows whole seconds
    in_period = [
        s for s in inputs.snapshots if inputs.since is None or _t(s["time"]) >= inputs.since
    ]
    nodes = [n["node"] for n in inputs.status["nodes"] if n["role"] == "primary"]
    nodes += sorted({s["node"] for s in in_period} - set(nodes))
    targets = dict(inputs.status["targets"])
    drills = [_drill(d, inputs.redact_uids) for d in inputs.drills]
    return SiteReport(
        site=inputs.site,
        generated_at=until.isoformat(timespec="seconds"),
        since=inputs.since.isoformat() if inputs.since else None,
        until=until.isoformat(timespec="seconds"),
        targets=targets,
        verdict=_verdict(inputs),
        summary=_summary(inputs, in_period, drills),
        nodes=nodes,
        snapshots=in_period,
        rpo={n: rpo_history(inputs.snapshots, n, inputs.since, until) for n in nodes},
        drills=drills,
        checks=[_run(r) for r in inputs.checks],
        backups=[_run(r) for r in inputs.backups],
        evidence=_evidence(inputs, targets),
        redacted=inputs.redact_uids,
    )
