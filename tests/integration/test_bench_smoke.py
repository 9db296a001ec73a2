"""The benchmark code does not rot: ``python -m bench.run --quick --only B1`` runs end to
end against a real Orthanc (small sizes) and writes its table. The figures of a quick
run mean nothing; ``make bench`` measures. (The study-level check's constant association
count is asserted in tests/unit/test_dicom_scp.py and tests/integration/
test_drill_acceptance.py, not here.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_b1_runs_and_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "B1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "| B1 |" in text and "| B1b |" in text
    assert "quick smoke run" in text
    print(f"\nquick B1 in {elapsed:.0f}s")
