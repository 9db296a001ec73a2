"""Which alerts a finished job raises.

- a circuit breaker opened by the run (one alert per alarm), vanished studies the run found
  (their UIDs: a person must acknowledge or restore them), a drill's result;
- otherwise the job's state, once per episode: the first failed (or warning) run alerts,
  repeats stay quiet (logged), a warning turning into a failure alerts again, and the first
  success afterwards sends a "recovered" notice. The episode is a row in the catalog, so a
  new leader or a restarted daemon does not alert again for the same episode.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from drctl.catalog.db import Catalog
from drctl.catalog.models import Alarm, Setting
from drctl.notify.events import Alert
from drctl.scheduler import lease
from drctl.scheduler.jobs import JobSpec
from drctl.scheduler.work import Outcome

WHAT = {
    "backup": "backup of",
    "index_copy": "index copy of",
    "replicate": "replication to",
    "check": "check of repository",
    "prune": "prune of repository",
    "drill": "drill of",
}


def _what(spec: JobSpec) -> str:
    return f"{WHAT.get(spec.kind, spec.kind)} {spec.target}"


def _common(spec: JobSpec, outcome: Outcome) -> dict:
    node = None if spec.kind in ("check", "prune") else spec.target
    repository = spec.target if node is None else None
    return {
        "agent": spec.agent,
        "job": spec.key,
        "node": node,
        "repository": repository,
        "run_id": outcome.run_id,
    }


def specific_alerts(catalog: Catalog, site: str, spec: JobSpec, outcome: Outcome) -> list[Alert]:
    """Circuit breakers opened by this run, vanished studies, drill results."""
    alerts = []
    common = _common(spec, outcome)
    if outcome.run_id is not None:
        with catalog.session() as s:
            alarms = s.scalars(select(Alarm).where(Alarm.run_id == outcome.run_id)).all()
        for alarm in alarms:
            alerts.append(
                Alert(
                    "circuit_breaker",
                    site,
                    f"{alarm.kind.replace('_', ' ')} on {alarm.node}: prune and "
                    "replication are paused until a person acknowledges it "
                    "(drctl alarms ack)",
                    reason=alarm.detail,
                    facts={"alarm_id": alarm.id},
                    **{**common, "node": alarm.node},
                )
            )
    if outcome.vanished:
        alerts.append(
            Alert(
                "vanished_studies",
                site,
                f"{len(outcome.vanished)} studies vanished from {spec.target} since "
                "its previous snapshot; acknowledge expected deletions with "
                "`drctl studies ack-vanished` or restore them",
                reason=outcome.reason,
                study_uids=tuple(outcome.vanished),
                **common,
            )
        )
    if spec.kind == "drill" and outcome.drill is None and outcome.state == "failed":
        alerts.append(
            Alert(
                "drill_failed",
                site,
                f"restore drill of {spec.target} could not run",
                reason=outcome.reason,
                **common,
            )
        )
    if outcome.drill is not None:
        passed = outcome.drill.get("verdict") == "passed"
        alerts.append(
            Alert(
                "drill_passed" if passed else "drill_failed",
                site,
                f"restore drill of {spec.target}: {outcome.drill.get('verdict')}",
                reason=None if passed else outcome.reason,
                facts={k: v for k, v in outcome.drill.items() if v is not None},
                **common,
            )
        )
    return alerts


def episode_alert(
    catalog: Catalog, site: str, spec: JobSpec, outcome: Outcome, *, quiet: bool
) -> Alert | None:
    """Move the job's alert episode along and return the alert it calls for (None when
    nothing changed, or ``quiet``: a specific alert already said it)."""
    if outcome.state == "interrupted" or spec.kind == "drill":
        return None
    key = f"job-alert:{site}/{spec.agent}:{spec.key}"
    common = _common(spec, outcome)
    with catalog.session() as s:
        lease.guard(s)
        row = s.get(Setting, key)
        if outcome.state == "succeeded":
            if row is None:
                return None
            s.execute(delete(Setting).where(Setting.key == key))
            return Alert(
                "run_recovered",
                site,
                f"{_what(spec)} succeeded again (after a {row.value} run)",
                **common,
            )
        if row is not None and not (row.value == "warning" and outcome.state == "failed"):
            return None
        if row is None:
            s.add(Setting(key=key, value=outcome.state))
        else:
            row.value = outcome.state
    if quiet:
        return None
    kind = "run_failed" if outcome.state == "failed" else "run_warning"
    return Alert(kind, site, f"{_what(spec)} {outcome.state}", reason=outcome.reason, **common)
