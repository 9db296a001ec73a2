"""rich progress bars on stderr (only when it is a terminal and --json is off)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from drctl.restic.messages import BackupStatus


@contextlib.contextmanager
def backup_progress(app, label: str) -> Iterator:
    """Yields a callback for restic status messages (or None when progress is off)."""
    if not app.show_progress:
        yield None
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[files]} files"), TimeRemainingColumn(),
                        console=app.err, transient=True)
    task = progress.add_task(label, total=None, files=0)

    def update(status: BackupStatus) -> None:
        progress.update(task, total=status.total_bytes or None, completed=status.bytes_done,
                        files=status.files_done)

    with progress:
        yield update
