"""Keeps a PACS node from staying down when drctl dies while it has the node stopped.

A stop-start index copy stops the node and starts it again in a ``finally``, which a
SIGKILL skips (the OOM killer, ``kill -9``, a watchdog). So before stopping the node drctl
starts this guard in a session of its own, holding the only write end of its standard
input. drctl writes ``disarm`` once the node is back (or its own error handling took
over); when the pipe closes without it, drctl is gone and the guard runs the node's start
command.

    python -m drctl.pacs.start_guard -- START-ARGV...
"""

from __future__ import annotations

import sys
import time

DISARM = b"disarm"


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m drctl.pacs.start_guard -- START-ARGV...", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    told = sys.stdin.buffer.read()  # until drctl closes the pipe, or dies
    if told.strip() == DISARM:
        return 0
    from drctl import execute

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(
        f"{stamp} drctl ended while the node was stopped; running its start command",
        file=sys.stderr,
        flush=True,
    )
    result = execute.run(command, timeout=600)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} start command exited {result.returncode}"
        + (f": {result.stderr_text[-500:]}" if result.returncode else ""),
        file=sys.stderr,
        flush=True,
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
