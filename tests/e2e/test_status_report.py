"""``drctl status`` and ``drctl report`` after a demo run plus a few more backups and
drills, one of them failed (study files deleted from the restored node), as a user runs
them: the real CLI, a real catalog, and the page opened in headless Chromium.

The acceptance of issue 11: the report opens in Chromium with its charts drawn and the
failed drill listed with its findings; ``drctl status`` fits an 80-column terminal and
puts the breached target on its first lines.

One module fixture builds the site (about a minute); the tests only read it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from drctl.cli.cmd_status import render_site
from drctl.pacs.orthanc.load import store_files
from drctl.sample import SampleArchive, generate, more
from tests.support.drctl_env import DRCTL, DrctlEnv
from tests.support.drills import CHROMIUM_FLAGS, manifest_instances, png_pixel

pytestmark = [
    pytest.mark.xdist_group("status-report"),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed"),
]

DEMO_STUDIES, DEMO_SEED = 6, 2024  # drctl demo's sample archive (drctl.actions.demo.SEED)
FAILED_RED = (179, 45, 46)  # #b32d2e, the verdict band of a site with a breach


@dataclass
class Site:
    env: DrctlEnv
    archive: SampleArchive  # every study the primary ever held
    victim: str  # the study whose files the failed drill lost
    failed_drill: int
    drills: list[int]  # oldest first
    root: Path
    demo_drill_ended: str


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    """``drctl demo`` (a backup and a passed drill), then two more backups with new
    studies, a passed drill, a repository check and a drill that fails: the demo's
    primary is started again and the actions run in-process (real Orthanc, restic and
    catalog; the CLI is what the tests exercise)."""
    from drctl.actions.backup import run_backup
    from drctl.actions.check import run_check
    from drctl.actions.drill import DrillOptions, run_drill
    from drctl.actions.drill_history import show_drill

    root = tmp_path_factory.mktemp("status-report")
    folder = root / "demo"
    env_vars = {k: v for k, v in os.environ.items() if k != "DRCTL_CONFIG"}
    demo = subprocess.run(
        [DRCTL, "--json", "demo", "--dir", str(folder), "--studies", str(DEMO_STUDIES)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_vars,
        cwd=root,
    )
    assert demo.returncode == 0, demo.stderr
    config = Path(json.loads(demo.stdout)["config"])
    doc = tomllib.loads(config.read_text())
    node = doc["node"]["primary"]
    env = DrctlEnv(folder, config, doc)
    archive = generate(root / "sample", studies=DEMO_STUDIES, seed=DEMO_SEED)
    ctx = env.context()
    _run(node["start"])  # the demo stopped its primary
    try:
        for batch in (1, 2):
            added = more(archive, 2 * batch, out_dir=root / f"more-{batch}")
            store_files(
                list(added.paths),
                aet=node["aet"],
                host="127.0.0.1",
                port=node["port"],
                calling_aet="DRCTL",
            )
            archive = archive + added
            assert run_backup(ctx, "primary").state == "succeeded"
            if batch == 1:
                second = run_drill(ctx, DrillOptions(sandbox=True))
                assert second.verdict == "passed"
        assert run_check(ctx, "local").ok
        victim = sorted(archive.study_uids)[2]
        files = [i.path for i in manifest_instances(env, [victim])]

        def delete(restored, plan) -> None:
            for path in files:
                (restored.storage_dir / path).unlink()

        failed = run_drill(ctx, DrillOptions(sandbox=True, scope="full", before_start=delete))
        assert failed.verdict == "failed"
        demo_drill_ended = show_drill(ctx, 1)["ended_at"]
    finally:
        ctx.catalog.close()
        _run(node["stop"])
    drills = [1, second.drill_id, failed.drill_id]
    return Site(env, archive, victim, failed.drill_id, drills, root, demo_drill_ended)


# --- drctl status ------------------------------------------------------------------------


def test_status_fits_80_columns_and_puts_the_breach_first(site: Site) -> None:
    proc = site.env.cli("status", json_output=False, extra_env={"COLUMNS": "80"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    assert "target breached" in lines[1]
    assert "BREACH" in lines[2] and f"drill {site.failed_drill} of primary failed" in lines[2], (
        proc.stdout
    )
    assert "Backups" in proc.stdout and "Drills" in proc.stdout

    doc = site.env.cli_json("status", expect=1)
    assert doc["ok"] is False and doc["breaches"] >= 1
    first = doc["problems"][0]
    assert (first["severity"], first["kind"], first["node"]) == (
        "breach",
        "drill_failed",
        "primary",
    )
    (primary,) = doc["nodes"]
    assert primary["drill"]["drill_id"] == site.failed_drill
    assert primary["drill"]["state"] == "failed"
    assert primary["backup"]["state"] == "succeeded"
    assert primary["snapshot"]["studies"] == len(site.archive.studies)
    assert primary["rpo"]["breach"] is False
    assert doc["repositories"][0]["check"]["state"] == "succeeded"

    # the same document rendered by a console of exactly 80 columns
    out = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    render_site(out, doc)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "BREACH" in "\n".join(text.splitlines()[:3])


def test_fleet_lists_the_site_in_breach(site: Site) -> None:
    doc = site.env.cli_json("status", "--fleet", expect=1)
    (line,) = doc["sites"]
    assert line["site"] == "demo" and line["breaches"] >= 1
    assert line["last_drill"]["drill_id"] == site.failed_drill


# --- drctl report: the page as a user sees it ----------------------------------------------


PROBE = """
<script id="probe-script">
(function () {
  function box(e) { var b = e.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; }
  var body = document.body, first = body.firstElementChild, out = {};
  out.first = {id: first.id, cls: first.className, text: first.innerText, box: box(first),
               style: getComputedStyle(first).display};
  out.charts = Array.prototype.map.call(document.querySelectorAll("svg.chart"), function (svg) {
    function drawn(sel) {
      return Array.prototype.map.call(svg.querySelectorAll(sel), function (e) {
        var b = e.getBBox(); return [b.width, b.height];
      });
    }
    return {id: svg.id, box: box(svg), series: drawn("polyline.series"),
            bars: drawn("rect.bar"), points: svg.querySelectorAll("circle.point").length,
            targets: svg.querySelectorAll("line.target").length,
            failedBars: svg.querySelectorAll("rect.bar.failed").length,
            empty: svg.querySelectorAll("text.empty").length};
  });
  out.drills = Array.prototype.map.call(document.querySelectorAll("tr.drill"), function (tr) {
    return {id: +tr.dataset.drill, verdict: tr.dataset.verdict, box: box(tr), text: tr.innerText};
  });
  out.findings = Array.prototype.map.call(document.querySelectorAll("tr.findings"), function (tr) {
    return {drill: +tr.dataset.drill, box: box(tr),
            kinds: Array.prototype.map.call(tr.querySelectorAll("tr.finding"), function (f) { return f.dataset.kind; }),
            uids: Array.prototype.map.call(tr.querySelectorAll("tr.finding td.uid"), function (td) { return td.innerText; })};
  });
  out.evidence = Array.prototype.map.call(document.querySelectorAll("tr.evidence"), function (tr) {
    return {ref: tr.dataset.requirement, text: tr.innerText};
  });
  out.external = document.querySelectorAll("[src], link, iframe, object, embed").length +
                 document.querySelectorAll("script:not(#probe-script)").length;
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  body.appendChild(pre);
})();
</script>
"""


def chromium_probe(page: Path, shot: Path) -> dict:
    """Open a copy of ``page`` with :data:`PROBE` appended in headless Chromium, take a
    screenshot of the page itself, and return what the probe's DOM queries found."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory(prefix="drctl-chromium-") as profile:
        base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        subprocess.run(
            # every tile painted before the capture (else a tall page's bottom is blank)
            [
                *base,
                "--run-all-compositor-stages-before-draw",
                "--window-size=1100,2400",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        dom = subprocess.run(
            [*base, "--window-size=1100,2400", "--dump-dom", probed.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout.decode()
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    import html

    return json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))


@pytest.fixture(scope="module")
def page(site: Site) -> Path:
    out = site.root / "reports" / "site.html"
    proc = site.env.cli("report", "--out", str(out), json_output=False)
    assert proc.returncode == 1, proc.stderr  # the last drill failed: problems found
    assert f"report: {out}" in proc.stdout
    return out


def test_report_opens_in_chromium_with_charts_drawn_and_the_failed_drill(
    site: Site, page: Path
) -> None:
    shot = site.root / "site-report.png"
    found = chromium_probe(page, shot)
    keep = os.environ.get("DRCTL_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)

    # the verdict is the first thing on the page, at the top, and says attention
    first = found["first"]
    assert first["id"] == "verdict" and "failed" in first["cls"]
    assert first["box"][1] == 0 and first["box"][3] > 40
    assert "1 target breached" in first["text"]
    assert png_pixel(shot, 8, 8) == FAILED_RED

    charts = {c["id"]: c for c in found["charts"]}
    assert set(charts) == {"chart-rpo", "chart-rto", "chart-size-primary", "chart-studies-primary"}
    for chart in charts.values():
        assert chart["box"][2] > 600 and chart["box"][3] > 150, chart  # visible, full width
        assert chart["empty"] == 0
    assert charts["chart-rpo"]["targets"] == 1
    assert all(w > 100 and h > 5 for w, h in charts["chart-rpo"]["series"])
    rto = charts["chart-rto"]
    assert len(rto["bars"]) == len(site.drills) and rto["targets"] == 1
    assert rto["failedBars"] == 1 and all(h >= 1 for _, h in rto["bars"])
    size = charts["chart-size-primary"]
    assert len(size["bars"]) == 3 and len(size["series"]) == 1 and size["points"] == 3
    studies = charts["chart-studies-primary"]
    assert studies["points"] == 3 and studies["series"][0][1] > 10  # the count grew

    drills = {d["id"]: d for d in found["drills"]}
    assert set(drills) == set(site.drills)
    failed = drills[site.failed_drill]
    assert failed["verdict"] == "failed" and failed["box"][3] > 0 and "failed" in failed["text"]
    (findings,) = [f for f in found["findings"] if f["drill"] == site.failed_drill]
    assert findings["box"][3] > 0
    assert "instance_missing" in findings["kinds"]
    assert site.victim in findings["uids"]
    assert [e["ref"][-3:] for e in found["evidence"]] == ["(A)", "(B)", "(C)", "(D)", "(E)"]
    assert found["external"] == 0


def test_report_holds_no_patient_data_and_uids_only_in_findings(site: Site, page: Path) -> None:
    text = page.read_text()
    for value in site.archive.patient_names | site.archive.patient_ids:
        assert value not in text
    others = site.archive.study_uids - {site.victim}
    assert not any(uid in text for uid in others)


def test_report_json_is_the_model_and_prints_to_pdf(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    doc = site.env.cli_json("report", "--out", str(out), expect=1)
    assert doc["report"] == str(out) and out.is_file()
    assert doc["verdict"]["ok"] is False
    assert doc["verdict"]["problems"][0]["kind"] == "drill_failed"
    assert [d["drill_id"] for d in doc["drills"]] == sorted(site.drills, reverse=True)
    failed = next(d for d in doc["drills"] if d["drill_id"] == site.failed_drill)
    assert {(f["kind"], f["study_uid"]) for f in failed["findings"]} >= {
        ("instance_missing", site.victim)
    }
    assert len(doc["snapshots"]) == 3 and len(doc["rpo"]["primary"]) >= 4
    assert [row["status"] for row in doc["hipaa"]][:2] == ["evidenced", "evidenced"]
    assert doc["summary"]["backups"] == {"succeeded": 3}

    pdf = tmp_path / "r.pdf"
    with tempfile.TemporaryDirectory(prefix="drctl-chromium-") as profile:
        subprocess.run(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}",
                out.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000


def test_report_since_and_redaction(site: Site, tmp_path: Path) -> None:
    # a period starting after the demo's drill leaves it (and the demo's backup) out
    period = tmp_path / "period.html"
    doc = site.env.cli_json(
        "report", "--out", str(period), "--since", site.demo_drill_ended, expect=1
    )
    assert [d["drill_id"] for d in doc["drills"]] == sorted(site.drills[1:], reverse=True)
    assert len(doc["snapshots"]) == 2
    start, rpo = doc["rpo"]["primary"][0]
    assert start == doc["since"] and rpo > 0  # the RPO counts from the demo's backup

    # reports.redact_uids: no study UID at all, not even in findings
    config = tmp_path / "redacted.toml"
    config.write_text(site.env.config_path.read_text() + "\n[reports]\nredact_uids = true\n")
    config.chmod(0o600)
    redacted = DrctlEnv(site.env.root, config, {})
    out = tmp_path / "redacted.html"
    doc = redacted.cli_json("report", "--out", str(out), expect=1)
    assert doc["redacted"] is True
    uids = (
        site.archive.study_uids
        | {i.sop_uid for i in site.archive.instances}
        | {i.series_uid for i in site.archive.instances}
    )
    for text in (out.read_text(), json.dumps(doc)):
        assert not [uid for uid in uids if uid in text]
    assert "instance_missing" in out.read_text()
