"""Reading the catalog for the scheduler: jobs' runs, and the site facts behind metrics.

Only reads; every query is bounded (newest rows, aggregates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from drctl.catalog.models import Drill, JobState, Run, Snapshot, UTCDateTime
from drctl.catalog.queries import (  # noqa: F401 - shared with status and reports, re-exported
    GOOD_RUN_STATES,
    GOOD_SNAPSHOTS,
    newest_good_snapshots,
    newest_replications,
)
from drctl.catalog.runs import run_outcome
from drctl.config import Settings
from drctl.scheduler.jobs import JobSpec, agents, jobs_for
from drctl.scheduler.metrics import JobFacts, SiteFacts

# job kinds whose runs name a repository rather than a node
REPOSITORY_KINDS = ("check", "prune")


def state_agent(site: str, agent: str) -> str:
    """``JobState.agent`` of an agent: namespaced by site (agents of several sites may
    share one catalog and one host name)."""
    return f"{site}/{agent}"


def runs_of(site: str, spec: JobSpec):
    """A SELECT of the runs of ``spec``'s kind on its target (any trigger)."""
    query = select(Run).where(Run.site == site, Run.kind == spec.kind)
    if spec.kind in REPOSITORY_KINDS:
        return query.where(Run.repository == spec.target)
    return query.where(Run.node == spec.target)


def run_json(run: Run | None) -> dict | None:
    if run is None:
        return None
    return {"run_id": run.id, **run_outcome(run), "host": run.host, "pid": run.pid}


@dataclass
class JobHistory:
    state: JobState | None
    last_run: Run | None
    last_success: Run | None


def job_history(session: Session, site: str, spec: JobSpec) -> JobHistory:
    """The job's state row, its newest run and its newest good run."""
    state = session.get(JobState, (state_agent(site, spec.agent), spec.key))
    runs = runs_of(site, spec)
    last = session.scalars(runs.order_by(Run.id.desc()).limit(1)).first()
    good = session.scalars(
        runs.where(Run.state.in_(GOOD_RUN_STATES)).order_by(Run.id.desc()).limit(1)
    ).first()
    return JobHistory(state, last, good)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def job_facts(session: Session, settings: Settings) -> list[JobFacts]:
    """Last success and last run of every scheduled job of the site."""
    site = settings.controller.site
    facts = []
    for agent in agents(settings):
        for spec in jobs_for(settings, agent):
            hist = job_history(session, site, spec)
            good, last = hist.last_success, hist.last_run
            duration = (
                (good.ended_at - good.started_at).total_seconds()
                if good and good.ended_at
                else None
            )
            facts.append(
                JobFacts(
                    agent,
                    spec.kind,
                    spec.target,
                    _ts(good.ended_at if good else None),
                    duration,
                    last.state if last else None,
                    _ts(last.ended_at if last else None),
                )
            )
    return facts


def first_run_start(session: Session, site: str, kind: str, node: str) -> datetime | None:
    return session.scalar(
        select(type_coerce(func.min(Run.started_at), UTCDateTime())).where(
            Run.site == site, Run.kind == kind, Run.node == node
        )
    )


def data_facts(session: Session, settings: Settings, facts: SiteFacts) -> None:
    """Snapshots, bytes added, replication lag and drills into ``facts``."""
    site = settings.controller.site
    counts = session.execute(
        select(Snapshot.node, Snapshot.repository, func.count())
        .where(Snapshot.site == site, Snapshot.forgotten_at.is_(None))
        .group_by(Snapshot.node, Snapshot.repository)
    ).all()
    facts.snapshots = {(node, repo): int(n) for node, repo, n in counts}
    newest = select(func.max(Snapshot.id)).where(Snapshot.site == site).group_by(Snapshot.node)
    facts.last_bytes_added = {
        s.node: int(s.bytes_added or 0)
        for s in session.scalars(select(Snapshot).where(Snapshot.id.in_(newest)))
    }
    facts.replication = {
        standby: (r.lag_s, r.lag_bytes) for standby, r in newest_replications(session, site).items()
    }
    last_drill = (
        select(func.max(Drill.id))
        .where(Drill.site == site, Drill.verdict.in_(("passed", "failed")))
        .group_by(Drill.node)
    )
    facts.drills = {
        d.node: (d.verdict, (d.ended_at or d.started_at).timestamp(), d.rto_s, d.rpo_s)
        for d in session.scalars(select(Drill).where(Drill.id.in_(last_drill)))
    }
