"""When an Orthanc node last changed its data, from its change feed (``/changes``).

"Stable*" events only say that nothing arrived for ``StableAge`` seconds; they are not
changes of the data, and counting them would make a fresh snapshot look older than it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

WINDOW = 200  # newest changes looked at for a data change


def change_time(text: str) -> datetime:
    """Orthanc's change ``Date`` (``20240131T101500``, UTC) -> an aware datetime.
    Raises ValueError for anything else."""
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def newest_data_change(changes: list[dict[str, Any]]) -> datetime | None:
    """The time of the newest change that is not a "Stable*" event; when the page holds
    only those, the newest change at all (an upper bound); None for an empty page."""
    dated = [c for c in changes if c.get("Date")]
    if not dated:
        return None
    data = [c for c in dated if not str(c.get("ChangeType", "")).startswith("Stable")]
    newest = max(data or dated, key=lambda c: int(c.get("Seq", 0)))
    return change_time(newest["Date"])


def newest_change_time(rest: Any) -> datetime | None:
    """The newest data change of the node behind ``rest`` (an OrthancRest). Raises
    NodeUnreachable / OrthancRestError."""
    last = rest.last_change()
    if not last:
        return None
    page = rest.changes(since=max(0, last - WINDOW), limit=WINDOW)
    return newest_data_change(page.get("Changes", []))
