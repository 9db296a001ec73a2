"""``drctl scheduler status``: per agent, its jobs (from the configuration), their
triggers, next and last run, and the current leader (from the catalog); plus the site's
RPO clocks as the watchdog sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from drctl.catalog.db import Catalog
from drctl.config import Settings
from drctl.scheduler import history, lease
from drctl.scheduler.jobs import agents, describe, jobs_for, local_zone, next_after
from drctl.scheduler.watchdog import read_clocks


@dataclass
class SchedulerStatus:
    """The status document (``to_json``) and whether it shows a problem."""

    doc: dict

    @property
    def problems(self) -> list[str]:
        found = []
        for agent in self.doc["agents"]:
            if agent["jobs"] and not (agent["leader"] and agent["leader"]["alive"]):
                found.append(f"agent {agent['agent']}: no daemon leads it")
            for job in agent["jobs"]:
                last = job["last_run"]
                if last and last["state"] == "failed":
                    found.append(
                        f"agent {agent['agent']}: last run of {job['job']} {last['state']}"
                    )
        for clock in self.doc["rpo"]:
            if clock["breach"]:
                found.append(f"{clock['clock']} RPO of {clock['node']} exceeds drill.max_rpo")
        return found

    def to_json(self) -> dict:
        return {**self.doc, "problems": self.problems}


def _leader(view: lease.LeaseView | None) -> dict | None:
    if view is None or not view.holder:
        return None
    return {
        "host": view.info.get("host"),
        "pid": view.info.get("pid"),
        "since": view.acquired_at.isoformat(),
        "renewed_at": view.renewed_at.isoformat(),
        "expires_at": view.expires_at.isoformat(),
        "alive": view.alive,
        "token": view.token,
        "version": view.info.get("version"),
        "metrics": view.info.get("metrics"),
    }


def scheduler_status(
    settings: Settings, catalog: Catalog, *, now: datetime | None = None
) -> SchedulerStatus:
    """Read the status of every agent of the configuration."""
    now = now or datetime.now(UTC)
    site, grace, tz = settings.controller.site, settings.schedule.grace, local_zone()
    leaders = {v.name: v for v in lease.read(catalog, f"leader:{site}:")}
    out = []
    with catalog.session() as s:
        for agent in agents(settings):
            jobs = []
            for spec in jobs_for(settings, agent):
                hist = history.job_history(s, site, spec)
                last_fire = hist.state.last_fire_at if hist.state else None
                jobs.append(
                    {
                        "job": spec.key,
                        "kind": spec.kind,
                        "target": spec.target,
                        "schedule": spec.schedule,
                        "trigger": describe(spec),
                        "next_run_at": next_after(spec, last_fire, now, grace, tz).isoformat(),
                        "last_fire_at": last_fire.isoformat() if last_fire else None,
                        "fires": hist.state.fires if hist.state else 0,
                        "last_state": hist.state.last_state if hist.state else None,
                        "last_run": history.run_json(hist.last_run),
                        "last_success": history.run_json(hist.last_success),
                    }
                )
            view = leaders.get(lease.leader_name(site, agent))
            out.append({"agent": agent, "leader": _leader(view), "jobs": jobs})
    named = {lease.leader_name(site, a["agent"]) for a in out}
    for name, view in leaders.items():  # daemons of agents without jobs (watchdogs)
        if name not in named and view.alive:
            out.append({"agent": name.split(":", 2)[2], "leader": _leader(view), "jobs": []})
    clocks = read_clocks(catalog, settings, now=now, started=now)
    return SchedulerStatus(
        {
            "site": site,
            "now": now.isoformat(),
            "timezone": str(tz),
            "max_rpo_s": settings.drill.max_rpo,
            "agents": out,
            "rpo": [c.to_json() for c in clocks],
        }
    )
