"""``drctl scheduler run``: the foreground daemon of one agent.

The main thread keeps the agent's leadership lease: a follower tries to take it every
``lease_ttl / 3`` seconds, the leader renews it as often and steps down when a renewal
fails or when it was not renewed within ``lease_ttl`` (the process was frozen or stalled:
the lease has expired and another daemon may lead). Only the leader runs a scheduler
(:mod:`drctl.scheduler.term`); stepping down stops it and interrupts its running jobs.
Every daemon, leader or follower, runs the watchdog and the metrics endpoint.

Signals (handled in the main thread; handlers only set flags): SIGTERM and SIGINT stop the
daemon: no new firings, running jobs are interrupted the way the CLI interrupts a command
(restic gets SIGINT and cleans up, the run is recorded ``interrupted``), the lease is
released so a follower takes over at once, exit 0. A second signal stops waiting for jobs.
SIGHUP reloads the configuration (an invalid one is refused and logged; changing the
catalog or the site needs a restart).

With a SQLite catalog (one machine) one daemon per agent may run: a second one exits 3
(:class:`AlreadyRunning`) rather than wait as a follower; a lease left by a daemon of this
host whose process is gone is taken over at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from drctl import __version__
from drctl.catalog.db import Catalog
from drctl.config import Settings
from drctl.errors import CatalogUnavailable, DrctlError
from drctl.notify.notifier import Notifier, known_secrets
from drctl.scheduler import lease
from drctl.scheduler.interrupt import DaemonStopping, LeaseLost, RunningJobs
from drctl.scheduler.jobs import agents
from drctl.scheduler.lease import AlreadyRunning
from drctl.scheduler.metrics import Metrics
from drctl.scheduler.runner import Leadership
from drctl.scheduler.term import Term
from drctl.scheduler.watchdog import Watchdog

log = logging.getLogger(__name__)

STOP_WAIT_S = 45.0  # restic gets 30 s after SIGINT (execute.run's stop_grace)
STEP_DOWN_WAIT_S = 20.0
TICK_S = 0.2


class Daemon:
    """One agent's daemon; :meth:`run` blocks until it is told to stop."""

    def __init__(
        self, settings: Settings, catalog: Catalog, agent: str, reload: Callable[[], Settings]
    ):
        self._settings, self.catalog, self.agent, self._load = settings, catalog, agent, reload
        self.site = settings.controller.site
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.holder = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.started_at = datetime.now(UTC)
        self.stopping = threading.Event()
        self.running = RunningJobs()
        self.metrics = Metrics(self.site, agent)
        self.notifier = Notifier(
            settings.notify,
            site=self.site,
            mask=known_secrets(settings),
            on_result=self.metrics.delivery,
        )
        self.watchdog = Watchdog(catalog, self.settings, self.notifier, self.metrics, agent)
        self.term: Term | None = None
        self._renewed = 0.0
        self._lost: str | None = None
        self._wake = threading.Event()
        self._stop_signal: str | None = None
        self._signals = 0
        self._reload_requested = False
        self._refused: AlreadyRunning | None = None
        self._catalog_failing = False
        self._catalog_warned = 0.0

    def settings(self) -> Settings:
        return self._settings

    @property
    def lease_name(self) -> str:
        return lease.leader_name(self.site, self.agent)

    # --- main loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code (0). Raises AlreadyRunning
        (exit 3) on a SQLite catalog whose agent is served already."""
        previous = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        for sig in previous:
            signal.signal(sig, self._on_signal)
        try:
            self._announce()
            if self.catalog.dialect == "sqlite":
                self._take_sqlite_lease()
            self._serve_metrics()
            self.watchdog.start()
            while self._stop_signal is None:
                self._tick()
                self._sleep(self.settings().controller.lease_ttl / 3)
            log.info("%s received: stopping", self._stop_signal)
        finally:
            idle = self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not idle:
            log.error(
                "jobs still running after %.0fs; exiting anyway (their runs will be "
                "marked interrupted when their heartbeat goes stale)",
                STOP_WAIT_S,
            )
            logging.shutdown()
            os._exit(1)
        if self._refused is not None:
            raise self._refused
        return 0

    def _on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self._reload_requested = True
            return
        self._signals += 1
        self._stop_signal = self._stop_signal or name

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._stop_signal is None and not self._reload_requested:
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(TICK_S, left)):
                break
        self._wake.clear()

    def _announce(self) -> None:
        s = self.settings()
        log.info(
            "drctl %s scheduler for agent %s of site %s (pid %d on %s, catalog %s, "
            "lease_ttl %.0fs)",
            __version__,
            self.agent,
            self.site,
            self.pid,
            self.host,
            self.catalog.where,
            s.controller.lease_ttl,
        )
        known = agents(s)
        if self.agent not in known:
            log.warning(
                "agent %s has no node, repository or drill in %s (agents: %s): this daemon "
                "only watches the RPO",
                self.agent,
                s.source,
                ", ".join(known) or "none",
            )

    def _info(self) -> dict:
        metrics = self.settings().notify.metrics
        return {
            "host": self.host,
            "pid": self.pid,
            "agent": self.agent,
            "version": __version__,
            "started_at": self.started_at.isoformat(),
            "metrics": metrics.listen if metrics else None,
        }

    def _serve_metrics(self) -> None:
        metrics = self.settings().notify.metrics
        if metrics is None:
            return
        try:
            self.metrics.serve(metrics.listen)
        except OSError as exc:  # a daemon without metrics beats no daemon
            log.error("metrics endpoint %s not started: %s", metrics.listen, exc.strerror or exc)

    # --- leadership ----------------------------------------------------------------------

    def _take_sqlite_lease(self) -> None:
        ttl = self.settings().controller.lease_ttl
        token = lease.acquire_single(
            self.catalog,
            self.lease_name,
            self.holder,
            ttl,
            self._info(),
            what=(f"agent {self.agent} of site {self.site}"),
        )
        self._lead(token)

    def _tick(self) -> None:
        """One pass of the main loop; nothing raised here ends the daemon (leadership is
        safe anyway: a lease that is not renewed expires, and jobs fence on it)."""
        try:
            if self._reload_requested:
                self._reload()
            self._lease_tick()
            self._catalog_failing = False
        except CatalogUnavailable as exc:
            now = time.monotonic()
            if not self._catalog_failing or now - self._catalog_warned > 60:
                log.warning(
                    "agent %s: catalog unavailable (%s); %s",
                    self.agent,
                    exc,
                    "leading until the lease expires" if self.term else "not leading",
                )
                self._catalog_warned = now
            self._catalog_failing = True
        except Exception as exc:
            log.error(
                "agent %s: %s: %s",
                self.agent,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, DrctlError),
            )

    def _lease_tick(self) -> None:
        ttl = self.settings().controller.lease_ttl
        if self.term is None:
            token = lease.acquire(self.catalog, self.lease_name, self.holder, ttl, self._info())
            if token is not None:
                self._lead(token)
            return
        if self._lost:
            self._step_down(self._lost)
            return
        silent = time.monotonic() - self._renewed
        if silent > ttl:
            self._step_down(
                f"the lease was last renewed {silent:.0f}s ago (more than lease_ttl "
                f"{ttl:.0f}s: this process was frozen or stalled); it has expired"
            )
            return
        asked = time.monotonic()
        expiry = lease.renew(self.catalog, self.lease_name, self.holder, self.term.token, ttl)
        if expiry is None:
            self._step_down("the lease expired or another daemon took it")
            return
        self._renewed = asked
        self._renew_job_leases(ttl)

    def _renew_job_leases(self, ttl: float) -> None:
        for job in self.running.snapshot():
            try:
                kept = lease.renew(self.catalog, job.lease, self.holder, job.token, ttl)
            except CatalogUnavailable:
                continue  # the fence fails closed if the catalog stays away
            if kept is None:
                log.warning("job %s: its lease was lost; stopping it", job.key)
                self.running.interrupt(LeaseLost, {job.key})

    def _lead(self, token: int) -> None:
        self._renewed, self._lost = time.monotonic(), None
        leadership = Leadership(
            self.catalog,
            self.settings,
            self.agent,
            self.holder,
            token,
            self.notifier,
            self.metrics,
            self.running,
            self.stopping,
            self._on_lost,
            self.watchdog.poke,
        )
        term = Term(leadership)
        try:
            specs = term.start()
        except BaseException:
            term.stop_scheduler()
            lease.release(self.catalog, self.lease_name, self.holder, token)
            raise
        self.term = term
        self.metrics.leader = True
        log.warning(
            "agent %s: this daemon leads now (fencing token %d); %d job(s)%s",
            self.agent,
            token,
            len(specs),
            "" if specs else ": watching the RPO only",
        )

    def _on_lost(self, reason: str) -> None:
        self._lost = self._lost or reason
        self._wake.set()

    def _step_down(self, reason: str) -> None:
        term, self.term = self.term, None
        self.metrics.leader = False
        self._lost = None
        if term is None:
            return
        log.warning("agent %s: stepping down (token %d): %s", self.agent, term.token, reason)
        term.stop_scheduler()
        self._stop_jobs(LeaseLost, STEP_DOWN_WAIT_S)
        try:
            lease.release(self.catalog, self.lease_name, self.holder, term.token)
        except CatalogUnavailable:
            pass
        if self.catalog.dialect == "sqlite":
            view = lease.get(self.catalog, self.lease_name)
            if view is not None and view.alive and view.holder != self.holder:
                self._refused = AlreadyRunning(
                    f"another drctl scheduler (pid {view.info.get('pid')} on "
                    f"{view.info.get('host')}) took agent {self.agent} while this one was "
                    "stalled; a SQLite catalog allows one daemon per agent"
                )
                self._stop_signal = "the lease was taken by another daemon"

    def _stop_jobs(self, exc_type: type[BaseException], wait: float) -> bool:
        self.running.interrupt(exc_type)
        deadline = time.monotonic() + wait
        signals = self._signals
        while not self.running.wait_idle(TICK_S * 2.5):
            if time.monotonic() > deadline or self._signals > max(signals, 1):
                return False
        return True

    # --- reload and stop -----------------------------------------------------------------

    def _reload(self) -> None:
        self._reload_requested = False
        try:
            new = self._load()
        except DrctlError as exc:
            log.error("SIGHUP: configuration refused, keeping the running one: %s", exc)
            return
        old = self.settings()
        if (new.controller.catalog_url, new.controller.site) != (
            old.controller.catalog_url,
            old.controller.site,
        ):
            log.error(
                "SIGHUP: controller.catalog or controller.site changed: restart the "
                "daemon to use them; keeping the running configuration"
            )
            return
        if new.notify.metrics != old.notify.metrics:
            log.warning("SIGHUP: notify.metrics changes take effect at the next restart")
        self._settings = new
        self.notifier.update(new.notify, known_secrets(new))
        count = len(self.term.reschedule()) if self.term is not None else None
        log.warning(
            "SIGHUP: configuration reloaded from %s%s",
            new.source,
            f" ({count} job(s))" if count is not None else "",
        )

    def _shutdown(self) -> bool:
        """Stop everything; returns False when jobs were still running at the deadline."""
        self.stopping.set()
        idle = True
        term, self.term = self.term, None
        self.metrics.leader = False
        if term is not None:
            term.stop_scheduler()
            idle = self._stop_jobs(DaemonStopping, STOP_WAIT_S)
            try:
                lease.release(self.catalog, self.lease_name, self.holder, term.token)
            except CatalogUnavailable as exc:
                log.warning("lease not released (it expires by itself): %s", exc)
        self.watchdog.stop()
        self.notifier.close(5.0)
        self.metrics.close()
        log.info("agent %s: scheduler stopped", self.agent)
        return idle
