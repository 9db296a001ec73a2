"""``drctl manifest show`` and ``drctl manifest diff``."""

from __future__ import annotations

import click

from drctl.actions.manifests import diff_manifests, show_manifest, study_json
from drctl.cli.render import human_bytes, table


@click.group("manifest")
def manifest_group():
    """Study manifests of snapshots."""


@manifest_group.command("show")
@click.argument("snapshot")
@click.option("--node", help="With `latest`: the newest snapshot of this node.")
@click.pass_obj
def show(app, snapshot, node):
    """The studies in SNAPSHOT (an ID, a unique prefix, or `latest`)."""
    snap, studies = show_manifest(app.context(), snapshot, node=node)

    def render(out):
        out.print(f"snapshot {snap.short_id} of {snap.node} ({snap.time:%Y-%m-%d %H:%M}Z): "
                  f"{len(studies)} studies")
        t = table("study", "date", "modalities", "series", "instances", "size")
        for s in studies:
            t.add_row(s.study_uid, s.study_date or "-", s.modalities.replace("\\", ","),
                      str(s.series), str(s.instances), human_bytes(s.bytes))
        out.print(t)

    app.emit([study_json(s) for s in studies], render)
    return 0


@manifest_group.command("diff")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def diff(app, old, new):
    """Studies added, removed and changed (counts) between two snapshots of one node."""
    result = diff_manifests(app.context(), old, new)

    def render(out):
        out.print(f"{result.old.short_id} -> {result.new.short_id} ({result.new.node}): "
                  f"{len(result.added)} added, {len(result.removed)} removed, "
                  f"{len(result.changed)} changed")
        for s in result.added:
            out.print(f"  + {s.study_uid} ({s.series} series, {s.instances} instances)")
        for s in result.removed:
            out.print(f"  - {s.study_uid}")
        for a, b in result.changed:
            out.print(f"  ~ {a.study_uid}: series {a.series}->{b.series}, "
                      f"instances {a.instances}->{b.instances}")

    app.emit(result.to_json(), render)
    return 0


command = manifest_group
