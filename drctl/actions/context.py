"""What an action needs from its caller (the CLI or the scheduler): settings, catalog,
who triggered it, and where progress may be shown. Actions never read global state."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from drctl.catalog.db import Catalog
from drctl.catalog.runs import RunHandle, start_run
from drctl.config import Settings
from drctl.errors import DrctlError, UsageError
from drctl.restic.runner import Restic


@dataclass
class Context:
    settings: Settings
    catalog: Catalog
    trigger: str = "cli"
    show_progress: bool = False
    console: Any = None  # a rich Console on stderr for progress bars
    # callables run before each job step when the scheduler holds a lease (fencing)
    fence: Any = None
    # the agent this process acts as (`drctl scheduler run --agent NAME`); None: this host
    agent: str | None = None
    extras: dict = field(default_factory=dict)

    @property
    def site(self) -> str:
        return self.settings.controller.site

    @property
    def acting_agent(self) -> str:
        """The agent whose nodes this process may touch."""
        from drctl.config import local_agent

        return self.agent or local_agent()

    def restic(self, repository: str) -> Restic:
        """The restic runner of a configured repository (UsageError when unknown)."""
        repo = self.settings.repository.get(repository)
        if repo is None:
            known = ", ".join(self.settings.repository) or "none configured"
            raise UsageError(f"no repository named {repository!r} (known: {known})")
        return Restic(repository, repo, state_dir=self.settings.controller.state_dir,
                      timeouts=self.settings.controller.timeouts)

    def node(self, name: str):
        node = self.settings.node.get(name)
        if node is None:
            known = ", ".join(self.settings.node) or "none configured"
            raise UsageError(f"no node named {name!r} (known: {known})")
        return node

    @contextlib.contextmanager
    def run(self, kind: str, *, node: str | None = None, repository: str | None = None,
            details: dict | None = None) -> Iterator[RunHandle]:
        """Record an action as a run (see drctl.catalog.runs). Afterwards the audit chain's
        head is anchored in the repository the run used (or the first configured one)."""
        outcome: BaseException | None = None
        try:
            with start_run(self.catalog, kind, site=self.site, node=node,
                           repository=repository, trigger=self.trigger,
                           heartbeat=self.settings.controller.heartbeat,
                           details=details) as handle:
                yield handle
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            if outcome is None or (isinstance(outcome, DrctlError) and outcome.exit_code == 1):
                anchor_audit(self, repository)

    def check_fence(self) -> None:
        """Raise if this process lost its scheduler lease (no-op from the CLI)."""
        if self.fence is not None:
            self.fence()


log = logging.getLogger(__name__)


def anchor_audit(ctx: Context, repository: str | None) -> str | None:
    """Write the audit chain's head into ``repository`` (default: the first configured
    one) as the tag of a tiny drctl record: an anchor outside the catalog. Never raises:
    a repository that cannot take it is logged (the next run anchors again)."""
    from drctl.catalog import audit
    from drctl.restic.argv import restic_host
    from drctl.verify.records import encode, record_filename, record_tags

    name = repository or next(iter(ctx.settings.repository), None)
    if name is None:
        return None
    try:
        with ctx.catalog.session() as s:
            top = audit.head(s)
        if top is None:
            return None
        tag = audit.anchor_tag(*top)
        ctx.restic(name).backup_bytes(
            encode({"format": "drctl-audit/1", "site": ctx.site, "head_id": top[0],
                    "head_hash": top[1]}),
            filename=record_filename("audit", None), host=restic_host(ctx.site, "drctl"),
            tags=[*record_tags("audit", site=ctx.site), tag])
        return tag
    except DrctlError as exc:
        log.warning("audit anchor not written to repository %s: %s", name, exc)
        return None
