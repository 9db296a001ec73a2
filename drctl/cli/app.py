"""What every command shares: the loaded settings, the catalog, the output channel.

Output contract (cli.md): with ``--json`` a command prints exactly one JSON document on
stdout and nothing else there; human text goes to stdout as rich tables; logs, warnings
and progress go to stderr, progress only when stderr is a terminal and --json is off.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:  # imported lazily: `drctl --help` must not load the database stack
    from drctl.actions.context import Context
    from drctl.catalog.db import Catalog
    from drctl.config import Settings


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_json_default, indent=2, sort_keys=False)


class App:
    """Lazily loaded state of one CLI invocation."""

    def __init__(self, config_path: str | None, as_json: bool, verbosity: int, quiet: bool):
        self.config_path = config_path
        self.as_json = as_json
        self.verbosity = verbosity
        self.quiet = quiet
        self.out = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)
        self._catalog: Catalog | None = None

    @property
    def show_progress(self) -> bool:
        return self.err.is_terminal and not self.as_json and not self.quiet

    @cached_property
    def settings(self) -> Settings:
        from drctl import config as config_mod

        path = config_mod.find_config(self.config_path)
        settings = config_mod.load(path)
        exposure = config_mod.file_exposure(path)
        if exposure:
            logging.getLogger("drctl").warning(exposure)
        for ref in config_mod.secret_refs(settings):
            warning = ref.exposure()
            if warning:
                logging.getLogger("drctl").warning(warning)
        return settings

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from drctl.catalog.db import Catalog
            from drctl.catalog.runs import reap_stale

            controller = self.settings.controller
            password = controller.catalog_password.resolve() if controller.catalog_password else None
            self._catalog = Catalog.open(controller.catalog_url, password=password)
            reap_stale(self._catalog, stale_after=controller.stale_after)
        return self._catalog

    def context(self, trigger: str = "cli") -> Context:
        from drctl.actions.context import Context

        return Context(settings=self.settings, catalog=self.catalog, trigger=trigger,
                       show_progress=self.show_progress, console=self.err)

    def emit(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """Print ``data`` as JSON (--json) or through ``render`` for people."""
        if self.as_json:
            sys.stdout.write(dumps(data) + "\n")
            sys.stdout.flush()
        elif render is not None:
            render(self.out)
        else:
            self.out.print(dumps(data))

    def say(self, text: str) -> None:
        """A human line on stderr (never pollutes --json stdout)."""
        if not self.quiet:
            self.err.print(text)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
