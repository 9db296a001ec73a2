"""The watchdog: every daemon, leader or not and whatever its agent, reads the site's RPO
from the catalog on a short interval, so the standby's daemon notices when the primary's
daemon stopped backing up, and the other way round.

Two clocks, compared separately with ``drill.max_rpo`` (architecture.md, "RPO, honestly"):

- **image** (each primary): age of the newest complete or warning storage snapshot's
  consistent pair (``pair_time``, else ``time``). Replication plays no part in it, so a
  fresh standby index never masks a dead backup.
- **index** (each standby, when ``schedule.replicate`` is set): the lag the newest
  replication left plus the time since it finished (changes since then are assumed), or
  the age of its source time. The catalog alone decides: no PACS is contacted.

A node that never had one counts from its first run of that kind (or from this daemon's
start). A breach raises one alert per episode: the episode is a row in the catalog's
settings table, inserted by whichever daemon sees the breach first and deleted (with a
"recovered" notice) by whichever sees it end, so several daemons alert once between them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete

from drctl.catalog.db import Catalog
from drctl.catalog.models import Setting
from drctl.catalog.runs import reap_stale
from drctl.config import Settings, format_duration, parse_schedule
from drctl.notify.events import Alert
from drctl.notify.notifier import Notifier
from drctl.scheduler import history, lease
from drctl.scheduler.metrics import Metrics, SiteFacts

log = logging.getLogger(__name__)

MIN_INTERVAL_S, MAX_INTERVAL_S = 2.0, 60.0


def interval_for(settings: Settings) -> float:
    """How often the watchdog looks: a tenth of ``drill.max_rpo``, within 2 s .. 60 s."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, settings.drill.max_rpo / 10))


@dataclass
class Clock:
    clock: str  # "image" | "index"
    node: str
    age_s: float | None
    reference: datetime | None  # the time the newest usable data reflects
    detail: str
    breach: bool = False

    def to_json(self) -> dict:
        return {
            "clock": self.clock,
            "node": self.node,
            "age_s": round(self.age_s, 3) if self.age_s is not None else None,
            "reference": self.reference.isoformat() if self.reference else None,
            "breach": self.breach,
            "detail": self.detail,
        }


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _never(
    kind: str, node: str, first: datetime | None, started: datetime, now: datetime, what: str
) -> Clock:
    since = min(first, started) if first else started
    return Clock(
        kind,
        node,
        _age(now, since),
        None,
        f"no {what} of {node} yet (counting since {since.isoformat(timespec='seconds')})",
    )


def _image_clocks(s, settings: Settings, now: datetime, started: datetime) -> list[Clock]:
    site = settings.controller.site
    images = history.newest_good_snapshots(s, site)
    clocks = []
    for node in settings.primaries():
        t = images.get(node)
        if t is None:
            first = history.first_run_start(s, site, "backup", node)
            clocks.append(_never("image", node, first, started, now, "complete snapshot"))
            continue
        detail = (
            f"newest restorable snapshot pair of {node} is from {t.isoformat(timespec='seconds')}"
        )
        clocks.append(Clock("image", node, _age(now, t), t, detail))
    return clocks


def _index_clocks(s, settings: Settings, now: datetime, started: datetime) -> list[Clock]:
    site, value = settings.controller.site, settings.schedule.replicate
    if value is None or parse_schedule(value)[0] == "off":
        return []
    replications = history.newest_replications(s, site)
    clocks = []
    for standby in settings.standbys():
        rep = replications.get(standby)
        if rep is None:
            first = history.first_run_start(s, site, "replicate", standby)
            clocks.append(_never("index", standby, first, started, now, "replication"))
            continue
        if rep.lag_s is not None:  # the lag it left, and changes since are assumed
            age, ref = rep.lag_s + _age(now, rep.finished_at), rep.source_time
        else:
            ref = rep.source_time or rep.finished_at
            age = _age(now, ref)
        detail = (
            f"newest replication to {standby} finished "
            f"{rep.finished_at.isoformat(timespec='seconds')}"
        )
        clocks.append(Clock("index", standby, age, ref, detail))
    return clocks


def read_clocks(
    catalog: Catalog, settings: Settings, *, now: datetime, started: datetime
) -> list[Clock]:
    """The image clock of every primary and the index clock of every replicated standby,
    each judged against ``drill.max_rpo``."""
    with catalog.session() as s:
        clocks = _image_clocks(s, settings, now, started) + _index_clocks(s, settings, now, started)
    for clock in clocks:
        clock.breach = clock.age_s is not None and clock.age_s > settings.drill.max_rpo
    return clocks


def episode_key(site: str, clock: Clock) -> str:
    return f"rpo-alert:{site}:{clock.clock}:{clock.node}"


def open_or_close(catalog: Catalog, key: str, breach: bool, value: str) -> str | None:
    """Start (``breach``) or end an alert episode. Returns "opened" or "closed" when this
    call changed it, None when it was already so (another daemon may have done it)."""
    with catalog.session() as s:
        lease.guard(s)
        if breach:
            done = lease.insert_ignore(s, Setting, {"key": key, "value": value})
            return "opened" if done else None
        done = s.execute(delete(Setting).where(Setting.key == key)).rowcount
        return "closed" if done else None


class Watchdog(threading.Thread):
    """The watchdog thread (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        settings: Callable[[], Settings],
        notifier: Notifier,
        metrics: Metrics,
        agent: str,
    ):
        super().__init__(name="watchdog", daemon=True)
        self.catalog, self.settings, self.notifier = catalog, settings, notifier
        self.metrics, self.agent = metrics, agent
        self.started = datetime.now(UTC)
        self.stopped = threading.Event()
        self._poked = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.tick()
            except Exception as exc:  # a catalog outage must not end the watch
                log.warning("watchdog: %s: %s", type(exc).__name__, exc)
            self._poked.wait(interval_for(self.settings()))
            self._poked.clear()

    def poke(self) -> None:
        """Look again now (a job just ended: its metrics should not wait)."""
        self._poked.set()

    def stop(self) -> None:
        self.stopped.set()
        self._poked.set()

    def tick(self, now: datetime | None = None) -> list[Clock]:
        """One pass: reap dead runs, read the clocks and facts, alert on changes."""
        settings = self.settings()
        now = now or datetime.now(UTC)
        reap_stale(self.catalog, stale_after=settings.controller.stale_after)
        clocks = read_clocks(self.catalog, settings, now=now, started=self.started)
        for clock in clocks:
            self._judge(settings, clock)
        self.metrics.set_facts(self._facts(settings, clocks))
        return clocks

    def _judge(self, settings: Settings, clock: Clock) -> None:
        site = settings.controller.site
        value = json.dumps({"since": datetime.now(UTC).isoformat(), "agent": self.agent})
        change = open_or_close(self.catalog, episode_key(site, clock), clock.breach, value)
        if change is None:
            return
        limit = format_duration(settings.drill.max_rpo)
        if change == "opened":
            summary = (
                f"{clock.clock} RPO of {clock.node} is {format_duration(clock.age_s)}, "
                f"over drill.max_rpo {limit}"
            )
            kind = "rpo_breach"
        else:
            summary = (
                f"{clock.clock} RPO of {clock.node} is back to "
                f"{format_duration(clock.age_s)} (limit {limit})"
            )
            kind = "rpo_recovered"
        self.metrics.alerts.labels(kind).inc()
        self.notifier.alert(
            Alert(
                kind,
                site,
                summary,
                reason=clock.detail,
                agent=self.agent,
                node=clock.node,
                facts={
                    "clock": clock.clock,
                    "age_s": round(clock.age_s or 0, 1),
                    "max_rpo_s": settings.drill.max_rpo,
                },
            )
        )

    def _facts(self, settings: Settings, clocks: list[Clock]) -> SiteFacts:
        facts = SiteFacts(clocks=clocks, max_rpo_s=settings.drill.max_rpo)
        site = settings.controller.site
        with self.catalog.session() as s:
            history.data_facts(s, settings, facts)
            facts.jobs = history.job_facts(s, settings)
        for view in lease.read(self.catalog, f"leader:{site}:"):
            agent = view.name.split(":", 2)[2]
            facts.leases[agent] = (
                view.info.get("host"),
                view.info.get("pid"),
                view.expires_at.timestamp(),
                view.alive,
            )
        return facts
