"""The Prometheus endpoint of the daemon (``notify.metrics.listen``).

Site-wide values (RPO clocks, snapshots, replication lag, drills, jobs' last success, lease
holders) come from the catalog through the watchdog's :class:`SiteFacts`, so every daemon
of the site shows the same picture; counters (runs, alerts, deliveries) are this process's.
All names start with ``drctl_``; times are Unix timestamps in seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

FAILING = ("failed", "interrupted")


@dataclass
class JobFacts:
    """A job's last runs (any trigger) as the catalog has them."""

    agent: str
    kind: str
    target: str
    last_success_ts: float | None = None
    last_success_duration_s: float | None = None
    last_state: str | None = None
    last_ended_ts: float | None = None


@dataclass
class SiteFacts:
    """What the watchdog read from the catalog on its last pass."""

    clocks: list[Any] = field(default_factory=list)  # watchdog.Clock
    max_rpo_s: float = 0.0
    snapshots: dict[tuple[str, str], int] = field(default_factory=dict)
    last_bytes_added: dict[str, int] = field(default_factory=dict)
    replication: dict[str, tuple[float | None, int | None]] = field(default_factory=dict)
    drills: dict[str, tuple[str, float, float | None, float | None]] = field(default_factory=dict)
    leases: dict[str, tuple[str | None, int | None, float, bool]] = field(default_factory=dict)
    jobs: list[JobFacts] = field(default_factory=list)


class Metrics:
    """The registry, this daemon's counters and the last :class:`SiteFacts`."""

    def __init__(self, site: str, agent: str):
        self.site, self.agent = site, agent
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._facts = SiteFacts()
        self.leader = False
        self.runs = Counter(
            "drctl_job_runs",
            "Scheduled job runs by this daemon, by final state",
            ["agent", "job", "target", "state"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "drctl_alerts", "Alerts raised by this daemon", ["kind"], registry=self.registry
        )
        self.deliveries = Counter(
            "drctl_notify_deliveries",
            "Notification deliveries by channel and result",
            ["channel", "result"],
            registry=self.registry,
        )
        self.registry.register(_SiteCollector(self))
        self._server: Any = None

    def set_facts(self, facts: SiteFacts) -> None:
        with self._lock:
            self._facts = facts

    def facts(self) -> SiteFacts:
        with self._lock:
            return self._facts

    def delivery(self, channel: str, ok: bool) -> None:
        self.deliveries.labels(channel, "ok" if ok else "failed").inc()

    def serve(self, listen: str) -> None:
        """Start the HTTP endpoint on ``host:port``. Raises OSError when the port is taken."""
        from prometheus_client import start_http_server

        host, _, port = listen.rpartition(":")
        self._server, _thread = start_http_server(
            int(port), addr=host.strip("[]"), registry=self.registry
        )
        log.info("metrics on http://%s/metrics", listen)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class _SiteCollector:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.metrics
        facts = m.facts()
        site = m.site
        up = _gauge("drctl_daemon_leader", "1 when this daemon leads its agent", ["site", "agent"])
        up.add_metric([site, m.agent], 1.0 if m.leader else 0.0)
        yield up
        yield from _clock_families(site, facts)
        yield from _job_families(site, facts)
        yield from _data_families(site, facts)
        yield from _lease_families(site, facts)


def _clock_families(site: str, facts: SiteFacts) -> Iterator[GaugeMetricFamily]:
    rpo = _gauge(
        "drctl_rpo_seconds",
        "Age of the newest usable data (clock image or index)",
        ["site", "clock", "node"],
    )
    breach = _gauge(
        "drctl_rpo_breach", "1 when the clock exceeds drill.max_rpo", ["site", "clock", "node"]
    )
    for clock in facts.clocks:
        if clock.age_s is not None:
            rpo.add_metric([site, clock.clock, clock.node], clock.age_s)
        breach.add_metric([site, clock.clock, clock.node], 1.0 if clock.breach else 0.0)
    limit = _gauge("drctl_max_rpo_seconds", "drill.max_rpo", ["site"])
    limit.add_metric([site], facts.max_rpo_s)
    yield from (rpo, breach, limit)


def _job_families(site: str, facts: SiteFacts) -> Iterator[GaugeMetricFamily]:
    labels = ["site", "agent", "job", "target"]
    success = _gauge(
        "drctl_job_last_success_timestamp_seconds",
        "End of the job's newest succeeded or warning run",
        labels,
    )
    duration = _gauge(
        "drctl_job_last_success_duration_seconds",
        "Duration of the job's newest succeeded or warning run",
        labels,
    )
    failed = _gauge("drctl_job_last_run_failed", "1 when the job's newest run failed", labels)
    ended = _gauge("drctl_job_last_run_timestamp_seconds", "End of the job's newest run", labels)
    for job in facts.jobs:
        key = [site, job.agent, job.kind, job.target]
        if job.last_success_ts is not None:
            success.add_metric(key, job.last_success_ts)
        if job.last_success_duration_s is not None:
            duration.add_metric(key, job.last_success_duration_s)
        if job.last_state is not None:
            failed.add_metric(key, 1.0 if job.last_state in FAILING else 0.0)
        if job.last_ended_ts is not None:
            ended.add_metric(key, job.last_ended_ts)
    yield from (success, duration, failed, ended)


def _data_families(site: str, facts: SiteFacts) -> Iterator[GaugeMetricFamily]:
    snaps = _gauge(
        "drctl_snapshots", "Storage snapshots kept (not forgotten)", ["site", "node", "repository"]
    )
    for (node, repo), count in facts.snapshots.items():
        snaps.add_metric([site, node, repo], count)
    added = _gauge(
        "drctl_snapshot_last_bytes_added", "Bytes added by the newest snapshot", ["site", "node"]
    )
    for node, value in facts.last_bytes_added.items():
        added.add_metric([site, node], value)
    lag = _gauge(
        "drctl_replication_lag_seconds", "Lag left by the newest replication", ["site", "standby"]
    )
    lag_bytes = _gauge(
        "drctl_replication_lag_bytes", "WAL bytes behind (streaming)", ["site", "standby"]
    )
    for standby, (lag_s, lag_b) in facts.replication.items():
        if lag_s is not None:
            lag.add_metric([site, standby], lag_s)
        if lag_b is not None:
            lag_bytes.add_metric([site, standby], lag_b)
    verdict = _gauge("drctl_drill_last_passed", "1 when the newest drill passed", ["site", "node"])
    when = _gauge("drctl_drill_last_timestamp_seconds", "End of the newest drill", ["site", "node"])
    rto = _gauge(
        "drctl_drill_last_rto_seconds", "RTO measured by the newest drill", ["site", "node"]
    )
    rpo = _gauge(
        "drctl_drill_last_rpo_seconds", "RPO measured by the newest drill", ["site", "node"]
    )
    for node, (state, ended, rto_s, rpo_s) in facts.drills.items():
        verdict.add_metric([site, node], 1.0 if state == "passed" else 0.0)
        when.add_metric([site, node], ended)
        if rto_s is not None:
            rto.add_metric([site, node], rto_s)
        if rpo_s is not None:
            rpo.add_metric([site, node], rpo_s)
    yield from (snaps, added, lag, lag_bytes, verdict, when, rto, rpo)


def _lease_families(site: str, facts: SiteFacts) -> Iterator[GaugeMetricFamily]:
    holder = _gauge(
        "drctl_lease_holder",
        "1 for the daemon holding an agent's leadership",
        ["site", "agent", "host", "pid"],
    )
    expires = _gauge(
        "drctl_lease_expires_timestamp_seconds", "Expiry of an agent's lease", ["site", "agent"]
    )
    for agent, (host, pid, expiry, alive) in facts.leases.items():
        if alive:
            holder.add_metric([site, agent, host or "", str(pid or "")], 1.0)
        expires.add_metric([site, agent], expiry)
    yield from (holder, expires)
