"""``drctl demo``: drctl's main job on the embedded default, with no configuration needed.

In one folder: a synthetic sample archive, a local primary Orthanc holding it (started and
stopped by drctl, so its index can be copied with a short stop-start), a configuration
file, a local restic repository, one backup, and one drill in a sandbox. Every process it
started is stopped at the end, also on an error or Ctrl-C; running it again starts afresh
in the same folder (the folder is drctl's: it carries a marker, and a folder with other
content is refused).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drctl import config as config_mod
from drctl.actions.backup import BackupResult, run_backup
from drctl.actions.context import Context
from drctl.actions.drill import DrillOptions, run_drill
from drctl.actions.repo import init_repository
from drctl.catalog.db import Catalog
from drctl.errors import JobFailed, UsageError
from drctl.pacs.local import local_node
from drctl.reports.model import DrillReport
from drctl.sample import generate

log = logging.getLogger(__name__)

MARKER = ".drctl-demo"
CONTROLLER_AET = "DRCTL"
PRIMARY_AET = "DEMO_PRIMARY"
SEED = 2024


@dataclass
class DemoResult:
    folder: Path
    config: Path
    studies: int
    instances: int
    backup: BackupResult
    drill: DrillReport
    duration_s: float

    def to_json(self) -> dict:
        return {
            "dir": str(self.folder),
            "config": str(self.config),
            "studies": self.studies,
            "instances": self.instances,
            "snapshot_id": self.backup.snapshot_id,
            "backup_state": self.backup.state,
            "state": self.drill.verdict,
            "report": self.drill.report_path,
            "drill": self.drill.to_json(),
            "duration_s": round(self.duration_s, 1),
        }


def prepare(folder: Path) -> Path:
    """An empty demo folder: created, or emptied when it holds an earlier demo (its
    primary stopped first). Refuses a non-empty folder that is not a demo's."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise UsageError(
                f"{folder} is not empty and holds no earlier demo",
                hint="pass --dir with a new or empty folder",
            )
        local_node(
            "orthanc",
            folder / "primary",
            name="primary",
            aet=PRIMARY_AET,
            controller_aet=CONTROLLER_AET,
        ).stop()
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("drctl demo folder: `drctl demo` empties it on each run\n")
    return folder


def _secret_file(path: Path, value: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return f"file:{path}"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(folder: Path, node_table: dict) -> Path:
    """The demo's drctl.toml (secrets in 0600 files beside it, never in the file)."""
    tables = {
        "controller": {
            "site": "demo",
            "data_dir": folder / "state",
            "phi_key": _secret_file(folder / "secrets" / "phi.key", secrets.token_hex(32)),
        },
        "repository.local": {
            "url": folder / "repository",
            "password": _secret_file(folder / "secrets" / "restic.pass", secrets.token_urlsafe(24)),
        },
        "node.primary": node_table,
        "drill": {
            "mode": "sandbox",
            "report_dir": folder / "reports",
            "sandbox_dir": folder / "sandbox",
        },
    }
    lines = ["# written by `drctl demo`; secrets are in ./secrets (mode 0600)"]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
    path = folder / "drctl.toml"
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_demo(
    folder: Path, studies: int, *, say: Callable[[str], None], on_progress=None
) -> DemoResult:
    """The whole demo; returns what it did. Raises UsageError for a foreign folder, and
    the errors of the steps (the primary is stopped in every case)."""
    if studies < 1:
        raise UsageError("--studies must be at least 1")
    started = time.monotonic()
    folder = prepare(folder)
    say(f"demo folder: {folder}")
    archive = generate(folder / "sample", studies=studies, seed=SEED)
    say(
        f"sample archive: {len(archive.studies)} studies, {len(archive.instances)} instances "
        "(synthetic patients)"
    )
    primary = local_node(
        "orthanc",
        folder / "primary",
        name="primary",
        aet=PRIMARY_AET,
        controller_aet=CONTROLLER_AET,
    )
    try:
        primary.start()
        stored = primary.load(archive.paths)
        say(f"primary Orthanc {PRIMARY_AET} started and loaded with {stored} instances")
        config_path = write_config(folder, primary.node_table())
        backup, report = _backup_and_drill(config_path, say, on_progress)
    finally:
        primary.stop()
    return DemoResult(
        folder,
        config_path,
        len(archive.studies),
        len(archive.instances),
        backup,
        report,
        time.monotonic() - started,
    )


def _backup_and_drill(config_path: Path, say: Callable[[str], None], on_progress):
    """Repository, backup and sandbox drill with the demo's configuration; returns
    (backup result, drill report)."""
    settings = config_mod.load(config_path)
    catalog = Catalog.open(settings.controller.catalog_url)
    try:
        ctx = Context(settings=settings, catalog=catalog, trigger="demo")
        init_repository(ctx, "local")
        say("restic repository created")
        backup = run_backup(ctx, "primary")
        if backup.state != "succeeded":
            raise JobFailed(f"the demo backup ended {backup.state}: {backup.reason}")
        say(f"backup: snapshot {(backup.snapshot_id or '-')[:8]}, {backup.studies} studies")
        say("drill: restoring into a sandbox and verifying over DICOM ...")
        return backup, run_drill(ctx, DrillOptions(sandbox=True, on_progress=on_progress))
    finally:
        catalog.close()
