"""``drctl demo``: sample archive -> local primary Orthanc -> backup -> sandbox drill, in
one folder, with no configuration file. Exit 0 when the drill passed, 1 otherwise."""

from __future__ import annotations

from pathlib import Path

import click

from drctl.actions.demo import run_demo
from drctl.cli.cmd_drill import drill_progress
from drctl.cli.render import state
from drctl.config import format_duration


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("drctl-demo"),
    show_default=True,
    help="Folder for everything the demo makes (emptied when it holds an earlier demo).",
)
@click.option(
    "--studies",
    type=click.IntRange(min=1, max=5000),
    default=40,
    show_default=True,
    help="Synthetic studies in the sample archive.",
)
@click.pass_obj
def command(app, folder, studies):
    """Back up a sample archive from a local Orthanc and prove it restores: a drill in a
    sandbox. Needs no configuration; stops every process it started."""
    with drill_progress(app) as on_progress:
        result = run_demo(folder, studies, say=app.say, on_progress=on_progress)
    drill = result.drill

    def render(out):
        out.print(
            f"drill {state(drill.verdict)}: {drill.studies_verified} of "
            f"{drill.studies_expected} studies verified in a sandbox, RTO "
            f"{format_duration(drill.rto_s)}, RPO {format_duration(drill.rpo_s)}"
        )
        for f in drill.findings:
            out.print(f"  [red]{f['kind']}[/] {f.get('study_uid') or ''} {f['detail']}")
        out.print(f"report: {drill.report_path}", soft_wrap=True)
        out.print(f"config: {result.config}", soft_wrap=True)
        out.print(f"try: drctl --config {result.config} status", soft_wrap=True)
        out.print(f"demo took {format_duration(result.duration_s)}")

    app.emit(result.to_json(), render)
    return 0 if drill.verdict == "passed" else 1
