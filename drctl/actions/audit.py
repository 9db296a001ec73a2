"""``drctl audit verify``: the audit trail's hash chain, checked against every anchor drctl
wrote into the repositories (restic tags of its audit records: one listing, no reads)."""

from __future__ import annotations

from drctl.actions.context import Context
from drctl.catalog import audit
from drctl.errors import DrctlError


def verify_audit(ctx: Context) -> dict:
    """The chain report with the anchors found per repository. Unreachable repositories
    are reported (their anchors cannot be checked), not fatal."""
    anchors: list[tuple[int, str]] = []
    sources: dict[str, int | str] = {}
    for name in ctx.settings.repository:
        try:
            records = ctx.restic(name).snapshots(tags=["drctl", "kind:audit"])
        except DrctlError as exc:
            sources[name] = f"unreadable: {exc}"
            continue
        found = [a for r in records if r.tag_value("site") == ctx.site
                 for a in (audit.parse_anchor(t) for t in r.tags) if a]
        anchors += found
        sources[name] = len(found)
    with ctx.catalog.session() as s:
        report = audit.verify_chain(s, anchors)
    return {**report.to_json(), "anchors": sources}
