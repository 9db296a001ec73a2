"""What an action needs from its caller (the CLI or the scheduler): settings, catalog,
who triggered it, and where progress may be shown. Actions never read global state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drctl.catalog.db import Catalog
from drctl.catalog.runs import start_run
from drctl.config import Settings
from drctl.errors import UsageError
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
    extras: dict = field(default_factory=dict)

    @property
    def site(self) -> str:
        return self.settings.controller.site

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

    def run(self, kind: str, *, node: str | None = None, repository: str | None = None,
            details: dict | None = None) -> start_run:
        return start_run(self.catalog, kind, site=self.site, node=node, repository=repository,
                         trigger=self.trigger, heartbeat=self.settings.controller.heartbeat,
                         details=details)

    def check_fence(self) -> None:
        """Raise if this process lost its scheduler lease (no-op from the CLI)."""
        if self.fence is not None:
            self.fence()
