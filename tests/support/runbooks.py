"""Running a runbook as an administrator would: every ```sh block, in order, with bash,
the documented environment variables set, drctl on the PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)


def sh_blocks(name: str) -> list[str]:
    return SH_BLOCK.findall((ROOT / "runbooks" / name).read_text())


def run_runbook(name: str, variables: dict[str, str], *, stop_before: str | None = None,
                start_at: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Execute the runbook's ```sh blocks in one shell session, as a person pasting them
    into one terminal would: from the first block containing ``start_at`` up to the first
    block containing ``stop_before``. The session stops at the first failing command;
    returns the completed process."""
    blocks = []
    started = start_at is None
    for block in sh_blocks(name):
        started = started or start_at in block
        if stop_before and stop_before in block:
            break
        if started:
            blocks.append(block)
    script = "\n".join(f"echo '--- block {n}' >&2\n{b}" for n, b in enumerate(blocks, 1))
    env = {**os.environ, **variables,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, (name, proc.stdout[-3000:], proc.stderr[-3000:])
    assert f"--- block {len(blocks)}" in proc.stderr
    return proc
