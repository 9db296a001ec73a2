"""Acceptance of restore drills on a clean archive of several hundred studies: sandbox and
standby drills pass, dcmtk's findscu sees on the standby exactly the manifest's studies,
a standby that caps C-FIND results still passes, the study-level check uses one
association whatever the study count, a partial drill projects its RTO, and the HTML
report shows the verdict first in a real browser.

Measured figures are printed (run with -s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from drctl import execute
from drctl.dicom import DicomClient, Peer
from drctl.drill.checks import index_layer
from drctl.verify.manifest import StudyEntry
from tests.support.drills import (
    DRILL_JSON_KEYS,
    BackedUp,
    backed_up_primary,
    chromium,
    png_pixel,
    standby_node,
    standby_table,
)

STUDIES = 300
CLI_KEYS = set(DRILL_JSON_KEYS)
PASSED_GREEN = (0x1E, 0x7E, 0x34)


@pytest.fixture(scope="session")
def primary(tmp_path_factory) -> BackedUp:
    with backed_up_primary(
        tmp_path_factory.mktemp("drill-acceptance"), studies=STUDIES, series=1, instances=2
    ) as backed:
        yield backed


@pytest.fixture(scope="session")
def sandbox_drill(primary: BackedUp) -> dict:
    return primary.env.cli_json("drill", "run", "--sandbox", "--full")


@pytest.fixture(scope="session")
def standby_drill(primary: BackedUp):
    """A standby restored by a drill: (its node, the drill's JSON)."""
    node = standby_node(primary.root)
    primary.add_node("standby", standby_table(node))
    try:
        yield node, primary.env.cli_json("drill", "run", "--standby", "standby")
    finally:
        node.stop()


def figures(doc: dict) -> str:
    phases = doc["phases"]
    restore = phases["restore"]
    layers = ", ".join(f"{k} {v:.2f}s" for k, v in phases["verify"]["layers"].items())
    return (
        f"{doc['standby']} {doc['scope']} drill of {doc['studies_expected']} studies: "
        f"check {phases['check']['duration_s']:.1f}s, restore "
        f"{restore['duration_s']:.1f}s ({restore['bytes'] / 2**20:.1f} MiB at "
        f"{(restore['throughput_bps'] or 0) / 2**20:.1f} MiB/s), start "
        f"{phases['start']['duration_s']:.1f}s, verify {phases['verify']['duration_s']:.1f}s "
        f"({layers}); RTO {doc['rto_s']:.1f}s, associations {phases['verify']['associations']}"
    )


def test_sandbox_drill_passes(primary: BackedUp, sandbox_drill: dict) -> None:
    doc = sandbox_drill
    assert CLI_KEYS <= set(doc)
    assert doc["state"] == "passed", doc["findings"]
    assert doc["findings"] == []
    assert doc["studies_expected"] == doc["studies_verified"] == STUDIES
    assert doc["standby"] == "sandbox" and doc["scope"] == "full"
    assert doc["snapshot_id"] == primary.backup["snapshot_id"]
    assert doc["rto_projected"] is False and doc["rto_s"] > 0
    assert doc["rpo_s"] == 0 and doc["rpo_basis"] == "primary"  # nothing changed since
    assert doc["layers"]["files"]["checked"] == STUDIES * 2
    assert doc["phases"]["verify"]["associations"]["find"] == 1
    assert Path(doc["report"]).is_file() and Path(doc["report_json"]).is_file()
    listed = primary.env.cli_json("drill", "list")
    assert listed[0]["drill_id"] == doc["drill_id"] and listed[0]["state"] == "passed"
    shown = primary.env.cli_json("drill", "show", str(doc["drill_id"]))
    assert shown["state"] == "passed" and shown["findings"] == []
    assert set(shown["phases"]) == {"check", "restore", "start", "verify"}
    print("\n" + figures(doc))


def test_standby_drill_passes_and_findscu_sees_the_manifest(
    primary: BackedUp, standby_drill, tmp_path: Path
) -> None:
    standby, doc = standby_drill
    assert doc["state"] == "passed", doc["findings"]
    assert doc["studies_verified"] == STUDIES and doc["standby"] == "standby"
    print("\n" + figures(doc))
    argv = [
        "findscu",
        "-S",
        "-aet",
        "DRCTL",
        "-aec",
        standby.spec.aet,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "StudyInstanceUID",
        "-X",
        "-od",
        str(tmp_path),
        "127.0.0.1",
        str(standby.spec.dicom_port),
    ]
    result = execute.run(argv, env={"TCP_NODELAY": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr_text
    seen = {str(dcmread(p).StudyInstanceUID) for p in tmp_path.glob("rsp*.dcm")}
    assert seen == primary.manifest_uids()
    assert len(seen) == STUDIES


def test_study_check_opens_one_association_whatever_the_count(
    primary: BackedUp, standby_drill
) -> None:
    """After the standby drill the standby holds the archive."""
    standby, _ = standby_drill
    entries = [
        StudyEntry(uid, 1, 2, "", None, None, None) for uid in sorted(primary.manifest_uids())
    ]
    peer = Peer(standby.spec.aet, "127.0.0.1", standby.spec.dicom_port)
    for count in (10, STUDIES):
        client = DicomClient("DRCTL", timeout=20)
        with client.open(peer) as session:
            result = index_layer(session, entries[:count])
        assert len(result.proven) == count and result.findings == []
        assert client.associations_opened == 1


def test_standby_capping_find_results_still_passes(primary: BackedUp) -> None:
    capped = standby_node(primary.root, "capped", limit_find_results=5)
    try:
        primary.add_node("capped", standby_table(capped))
        doc = primary.env.cli_json("drill", "run", "--standby", "capped")
    finally:
        capped.stop()
    assert doc["state"] == "passed", doc["findings"]
    assert doc["studies_verified"] == STUDIES
    assert any("truncates" in note for note in doc["layers"]["extra"]["notes"])
    print("\n" + figures(doc))


def test_partial_drill_projects_the_rto(primary: BackedUp) -> None:
    doc = primary.env.cli_json("drill", "run", "--partial", "--sample", "5")
    assert doc["state"] == "passed", doc["findings"]
    assert doc["scope"] == "partial" and doc["rto_projected"] is True
    assert doc["studies_restored"] == 5 and doc["studies_verified"] == STUDIES
    assert doc["phases"]["restore"]["files_included"] == 10
    assert doc["layers"]["files"]["checked"] == 10
    page = Path(doc["report"]).read_text()
    assert "projected to the whole archive" in page
    assert "verified at index level only" in page
    print("\n" + figures(doc) + f" (measured {doc['rto_measured_s']:.1f}s)")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_shows_the_verdict_first_in_a_browser(sandbox_drill: dict, tmp_path: Path) -> None:
    from html.parser import HTMLParser

    shot = tmp_path / "report.png"
    dom = chromium(Path(sandbox_drill["report"]), screenshot=shot)

    class FirstElement(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.in_body, self.first, self.text = False, None, ""

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "body":
                self.in_body = True
            elif self.in_body and self.first is None:
                self.first = (tag, dict(attrs))

        def handle_data(self, data) -> None:
            if self.first is not None and not self.text and data.strip():
                self.text = data.strip()

    parser = FirstElement()
    parser.feed(dom)
    assert parser.first == ("header", {"id": "verdict", "class": "passed", "role": "banner"})
    assert parser.text == "Restore drill PASSED"
    assert png_pixel(shot, 8, 8) == PASSED_GREEN  # the verdict band is at the very top
