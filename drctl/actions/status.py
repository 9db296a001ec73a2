"""``drctl status``: the site at a glance, and what breaches its targets.

Per primary: its last backup and snapshot, the image RPO (the watchdog's clock: age of the
newest restorable pair), the last drill with its RTO and RPO, open alarms and vanished
studies nobody acknowledged. Per standby: ``drctl replicate status`` (index lag and the
effective RPO). Per repository: the last check. Scheduled jobs and their leaders come from
``drctl scheduler status``, which the caller passes in (the scheduler sits above actions).

Every problem is listed, breaches of a target first: an RPO over ``drill.max_rpo``, a last
drill that did not pass or took longer than ``drill.max_rto``, an open alarm, a last backup
or check that failed. Any problem makes ``drctl status`` exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from drctl.actions.alarms import open_alarms
from drctl.actions.context import Context
from drctl.actions.drill_history import list_drills, show_drill
from drctl.actions.replicate_status import replication_status
from drctl.actions.run_history import latest_runs, run_json, unacknowledged_vanished
from drctl.actions.snapshots import resolve_snapshot, snapshot_row
from drctl.catalog.queries import newest_good_snapshots
from drctl.config import format_duration
from drctl.errors import DrctlError, SnapshotNotFound

BREACH, PROBLEM = "breach", "problem"
FAILED_STATES = ("failed", "interrupted")
# runs judged elsewhere (backup, drill, check per target; replicate by replicate status)
JUDGED_KINDS = ("backup", "drill", "check", "replicate")
MESSAGE_MAX = 160


@dataclass(frozen=True)
class Problem:
    """One thing a person should look at; ``severity`` is ``breach`` when a target is
    breached (RPO, RTO, drill verdict, alarm, failed backup or check)."""

    severity: str
    kind: str
    node: str | None
    message: str

    def to_json(self) -> dict:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "node": self.node,
            "message": self.message,
        }


@dataclass
class SiteStatus:
    """The status document of one site (``to_json``) and its problems."""

    site: str
    now: datetime
    max_rpo_s: float
    max_rto_s: float
    nodes: list[dict] = field(default_factory=list)
    repositories: list[dict] = field(default_factory=list)
    schedule: dict = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def breaches(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == BREACH]

    def add(self, severity: str, kind: str, node: str | None, message: str) -> None:
        if len(message) > MESSAGE_MAX:
            message = message[: MESSAGE_MAX - 3] + "..."
        self.problems.append(Problem(severity, kind, node, message))

    def sort(self) -> None:
        """Breaches first; otherwise the order they were found in (node order)."""
        self.problems.sort(key=lambda p: p.severity != BREACH)

    def to_json(self) -> dict:
        return {
            "site": self.site,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "breaches": len(self.breaches),
            "targets": {"max_rpo_s": self.max_rpo_s, "max_rto_s": self.max_rto_s},
            "problems": [p.to_json() for p in self.problems],
            "nodes": self.nodes,
            "repositories": self.repositories,
            "schedule": self.schedule,
        }


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 3)


def site_status(
    ctx: Context,
    *,
    schedule: dict | None = None,
    now: datetime | None = None,
    catalog_only: bool = False,
) -> SiteStatus:
    """The status of this site. ``schedule`` is ``drctl scheduler status``'s document (its
    jobs and leaders; None when the caller has none). Contacts each standby's primary for
    its change position (``drctl replicate status``); reads everything else from the
    catalog. ``catalog_only`` (another site of a shared catalog, whose configuration this
    controller does not have): the primaries and repositories are those the catalog names,
    standbys are left out, and the targets are those the site's newest drill recorded."""
    now = now or datetime.now(UTC)
    st = SiteStatus(ctx.site, now, *_targets(ctx, catalog_only))
    latest = latest_runs(ctx)  # the newest run of each (kind, node, repository), by id
    backups = {r.node: r for r in latest if r.kind == "backup"}
    checks = [r for r in latest if r.kind == "check"]
    with ctx.catalog.session() as s:
        images = newest_good_snapshots(s, ctx.site)
    vanished = unacknowledged_vanished(ctx)
    alarms = open_alarms(ctx)
    if catalog_only:
        primaries = sorted((set(backups) | set(images)) - {None})
        standbys: list[str] = []
        repositories = sorted({r.repository for r in checks} - {None})
    else:
        primaries = list(ctx.settings.primaries())
        standbys = list(ctx.settings.standbys())
        repositories = list(ctx.settings.repository)
    for name in primaries:
        extra = {
            "alarms": [a for a in alarms if a["node"] == name],
            "vanished": vanished.get(name, 0),
        }
        st.nodes.append(_primary(ctx, st, name, backups.get(name), images.get(name), extra))
    for name in standbys:
        st.nodes.append(_standby(ctx, st, name))
    for alarm in alarms:
        st.add(
            BREACH,
            "alarm_open",
            alarm["node"],
            f"alarm {alarm['id']} ({alarm['kind']}) open since "
            f"{alarm['opened_at'][:16].replace('T', ' ')}: {alarm['detail']}",
        )
    for name in repositories:
        st.repositories.append(_repository(st, name, _last_check(checks, name)))
    _other_runs(st, latest)
    st.schedule = _schedule(st, schedule)
    st.sort()
    return st


def _targets(ctx: Context, recorded: bool) -> tuple[float, float]:
    """(max_rpo_s, max_rto_s): this configuration's, or (``recorded``) the ones the site's
    newest drill was judged by, falling back to this configuration's."""
    drill = ctx.settings.drill
    if recorded:
        for row in list_drills(ctx, limit=5):
            doc = show_drill(ctx, row["drill_id"])
            if doc.get("max_rpo") is not None and doc.get("max_rto") is not None:
                return float(doc["max_rpo"]), float(doc["max_rto"])
    return drill.max_rpo, drill.max_rto


def _primary(ctx, st: SiteStatus, name: str, backup, image: datetime | None, extra: dict) -> dict:
    """A primary's document; ``extra`` holds its open alarms and unacknowledged vanished
    studies."""
    snap = _newest_snapshot(ctx, name)
    if snap is not None:
        snap["age_s"] = _age(st.now, datetime.fromisoformat(snap["time"]))
    known = name in ctx.settings.node
    doc: dict = {
        "node": name,
        "role": "primary",
        "repository": ctx.settings.repository_of(name)
        if known
        else getattr(backup, "repository", None),
        "backup": run_json(backup, st.now) if backup else None,
        "snapshot": snap,
        "rpo": {
            "image_s": _age(st.now, image),
            "reference": image.isoformat() if image else None,
            "breach": image is None or _age(st.now, image) > st.max_rpo_s,
        },
        "drill": None,
        "alarms": [a["id"] for a in extra["alarms"]],
        "vanished_unacknowledged": extra["vanished"],
    }
    _judge_backup(st, name, backup, doc["rpo"])
    doc["drill"] = _drill(ctx, st, name)
    if extra["vanished"]:
        n = extra["vanished"]
        st.add(
            PROBLEM,
            "vanished_unacknowledged",
            name,
            f"{n} vanished stud{'y' if n == 1 else 'ies'} of {name} not acknowledged "
            "(drctl studies ack-vanished)",
        )
    return doc


def _newest_snapshot(ctx, name: str) -> dict | None:
    """The newest snapshot of ``name`` that was not forgotten (by time, then id), or None."""
    try:
        return snapshot_row(resolve_snapshot(ctx, "latest", node=name)).to_json()
    except SnapshotNotFound:
        return None


def _judge_backup(st: SiteStatus, name: str, backup, rpo: dict) -> None:
    """The last backup's state and the image RPO against ``drill.max_rpo``."""
    if backup is not None and backup.state in FAILED_STATES:
        st.add(
            BREACH,
            "backup_failed",
            name,
            f"last backup of {name} (run {backup.id}) {backup.state}: {backup.reason or '-'}",
        )
    elif backup is not None and backup.state == "warning":
        st.add(
            PROBLEM,
            "backup_warning",
            name,
            f"last backup of {name} (run {backup.id}) ended warning: {backup.reason or '-'}",
        )
    if rpo["image_s"] is None:
        what = "never backed up" if backup is None else "no restorable snapshot"
        st.add(BREACH, "rpo_breach", name, f"{name}: {what}: its RPO is unbounded")
    elif rpo["breach"]:
        st.add(
            BREACH,
            "rpo_breach",
            name,
            f"image RPO of {name} is {format_duration(rpo['image_s'])}, over "
            f"drill.max_rpo {format_duration(st.max_rpo_s)}",
        )


def _drill(ctx, st: SiteStatus, name: str) -> dict | None:
    finished = [d for d in list_drills(ctx, node=name, limit=20) if d["state"] != "running"]
    if not finished:
        st.add(PROBLEM, "never_drilled", name, f"{name}: never drilled (drctl drill run)")
        return None
    last = finished[0]
    when = last["ended_at"] or last["started_at"]
    doc = {**last, "age_s": _age(st.now, datetime.fromisoformat(when))}
    if last["state"] != "passed":
        st.add(
            BREACH,
            "drill_failed",
            name,
            f"last drill {last['drill_id']} of {name} {last['state']}: "
            f"{last['reason'] or str(last['findings']) + ' finding(s)'}",
        )
    if last["rto_s"] is not None and last["rto_s"] > st.max_rto_s:
        projected = " (projected)" if last["rto_projected"] else ""
        st.add(
            BREACH,
            "rto_exceeded",
            name,
            f"last drill {last['drill_id']} of {name}: RTO {format_duration(last['rto_s'])}"
            f"{projected} over drill.max_rto {format_duration(st.max_rto_s)}",
        )
    return doc


def _standby(ctx, st: SiteStatus, name: str) -> dict:
    doc: dict = {"node": name, "role": "standby", "replication": None}
    try:
        rep = replication_status(ctx, [name])[0]
    except DrctlError as exc:
        st.add(PROBLEM, "replication", name, f"standby {name}: {exc}")
        doc["error"] = str(exc)
        return doc
    doc["primary"] = rep.primary
    doc["replication"] = rep.to_json()
    breach = rep.rpo_s is not None and rep.rpo_s > rep.max_rpo_s
    for problem in rep.problems:
        st.add(BREACH if breach else PROBLEM, "replication", name, f"standby {name}: {problem}")
    return doc


def _last_check(checks: list, repository: str):
    """The newest check run of ``repository`` among the newest runs per target (or None)."""
    return max((r for r in checks if r.repository == repository), key=lambda r: r.id, default=None)


def _repository(st: SiteStatus, name: str, run) -> dict:
    doc = {"repository": name, "check": run_json(run, st.now) if run else None}
    if run is not None and run.state in FAILED_STATES:
        severity = BREACH if run.state == "failed" else PROBLEM
        st.add(
            severity,
            "check_failed",
            None,
            f"last check of repository {name} (run {run.id}) {run.state}: {run.reason or '-'}",
        )
    return doc


def _other_runs(st: SiteStatus, latest: list) -> None:
    """Restores, failovers, prunes, index copies ... whose newest run on a target failed."""
    for run in latest:
        if run.kind in JUDGED_KINDS or run.state not in FAILED_STATES:
            continue
        target = run.node or run.repository or "the site"
        st.add(
            PROBLEM,
            "run_failed",
            run.node,
            f"last {run.kind} of {target} (run {run.id}) {run.state}: {run.reason or '-'}",
        )


def _schedule(st: SiteStatus, doc: dict | None) -> dict:
    """The jobs and leaders of ``drctl scheduler status``, next run first."""
    if doc is None:
        return {"available": False, "jobs": [], "agents": []}
    jobs, agents = [], []
    for agent in doc.get("agents", []):
        leader = agent.get("leader") or {}
        alive = bool(leader.get("alive"))
        agents.append(
            {
                "agent": agent["agent"],
                "jobs": len(agent["jobs"]),
                "leader_alive": alive,
                "leader": f"{leader.get('host')}:{leader.get('pid')}" if leader else None,
            }
        )
        if agent["jobs"] and not alive:
            st.add(
                PROBLEM,
                "no_leader",
                None,
                f"agent {agent['agent']}: no scheduler daemon runs its {len(agent['jobs'])} "
                f"job(s) (drctl scheduler run --agent {agent['agent']})",
            )
        for job in agent["jobs"]:
            last = job.get("last_run") or {}
            jobs.append(
                {
                    "job": job["job"],
                    "agent": agent["agent"],
                    "trigger": job["trigger"],
                    "next_run_at": job["next_run_at"],
                    "last_state": last.get("state"),
                    "leader_alive": alive,
                }
            )
    jobs.sort(key=lambda j: j["next_run_at"])
    return {"available": True, "jobs": jobs, "agents": agents}
