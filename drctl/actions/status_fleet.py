"""``drctl status --fleet``: one line per site of a shared catalog, worst first.

Each site is judged by :func:`drctl.actions.status.site_status` from the catalog alone
(this controller has only its own site's configuration): its primaries and repositories
are those its runs name, its targets those its newest drill recorded. Standbys are left
out: their lag needs the site's own ``drctl status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from drctl.actions.context import Context
from drctl.actions.status import BREACH, SiteStatus, site_status
from drctl.catalog.queries import sites


@dataclass
class FleetStatus:
    """Every site's status, worst first."""

    catalog: str
    now: datetime
    sites: list[SiteStatus]

    @property
    def ok(self) -> bool:
        return all(site.ok for site in self.sites)

    def to_json(self) -> dict:
        return {
            "catalog": self.catalog,
            "now": self.now.isoformat(),
            "ok": self.ok,
            "sites": [site_line(site) for site in self.sites],
        }


def for_site(ctx: Context, site: str) -> Context:
    """``ctx`` looking at another site of the same catalog."""
    controller = ctx.settings.controller.model_copy(update={"site": site})
    settings = ctx.settings.model_copy(update={"controller": controller})
    return Context(settings=settings, catalog=ctx.catalog, trigger=ctx.trigger)


def severity_key(site: SiteStatus) -> tuple:
    """Sort key: most breaches, then most problems, then the oldest image RPO."""
    worst_rpo = max((n["rpo"]["image_s"] or 0.0 for n in site.nodes if n.get("rpo")), default=0.0)
    return (-len(site.breaches), -len(site.problems), -worst_rpo, site.site)


def fleet_status(ctx: Context, *, now: datetime | None = None) -> FleetStatus:
    """The status of every site in the catalog (this one judged like the others: from
    the catalog alone), worst first."""
    now = now or datetime.now(UTC)
    with ctx.catalog.session() as s:
        names = sites(s)
    found = [site_status(for_site(ctx, name), now=now, catalog_only=True) for name in names]
    found.sort(key=severity_key)
    return FleetStatus(ctx.catalog.where, now, found)


def site_line(site: SiteStatus) -> dict:
    """One site as a line of the fleet: the worst image RPO, newest backup and drill,
    counts of problems and the problems themselves."""
    primaries = [n for n in site.nodes if n["role"] == "primary"]
    rpo_values = [n["rpo"]["image_s"] for n in primaries]
    unbounded = any(v is None for v in rpo_values)
    backups = [n["backup"] for n in primaries if n["backup"]]
    drills = [n["drill"] for n in primaries if n["drill"]]
    last_backup = max(backups, key=lambda b: b["started_at"], default=None)
    last_drill = max(drills, key=lambda d: d["started_at"], default=None)
    return {
        "site": site.site,
        "ok": site.ok,
        "breaches": len(site.breaches),
        "problems_count": len(site.problems),
        "nodes": [n["node"] for n in primaries],
        "rpo_s": None if unbounded or not rpo_values else max(rpo_values),
        "rpo_breach": any(n["rpo"]["breach"] for n in primaries),
        "last_backup": _pick(last_backup, "run_id", "node", "state", "ended_at", "age_s"),
        "last_drill": _pick(
            last_drill, "drill_id", "node", "state", "rto_s", "rpo_s", "ended_at", "age_s"
        ),
        "targets": {"max_rpo_s": site.max_rpo_s, "max_rto_s": site.max_rto_s},
        "problems": [p.to_json() for p in site.problems],
        "worst": next((p.message for p in site.problems if p.severity == BREACH), None)
        or (site.problems[0].message if site.problems else None),
    }


def _pick(doc: dict | None, *keys: str) -> dict | None:
    return None if doc is None else {k: doc.get(k) for k in keys}
