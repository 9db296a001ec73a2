"""The ``drctl`` command: global options, command registry, errors -> exit codes.

Exit codes (every command; cli.md):
  0 done, everything verified; 1 ran but found problems; 2 usage or configuration error;
  3 could not do the job (repository, catalog or tool unreachable); 130 interrupted.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import traceback
from pathlib import Path

import click

from drctl import __version__
from drctl.cli.app import App
from drctl.errors import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    DrctlError,
    Interrupted,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 done and verified, 1 problems found, 2 usage or configuration error, "
    "3 could not do the job (repository, catalog or tool unreachable), 130 interrupted."
)

COMMAND_PREFIX = "cmd_"


class LazyGroup(click.Group):
    """Commands live one module each in ``drctl/cli/cmd_<name>.py`` (``-`` in a command
    name becomes ``_``), exposing ``command``. A module is imported only when its command
    is used, so the daemon and scripts start fast."""

    def list_commands(self, ctx):
        folder = Path(__file__).parent
        return sorted(
            p.stem[len(COMMAND_PREFIX) :].replace("_", "-")
            for p in folder.glob(f"{COMMAND_PREFIX}*.py")
        )

    def get_command(self, ctx, name):
        if name not in self.list_commands(ctx):
            return None
        module = importlib.import_module(f"drctl.cli.{COMMAND_PREFIX}{name.replace('-', '_')}")
        return module.command


@click.group(
    cls=LazyGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $DRCTL_CONFIG, ./drctl.toml, /etc/drctl/drctl.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(__version__, prog_name="drctl")
@click.pass_context
def cli(ctx: click.Context, config_path, as_json, verbose, quiet):
    """drctl: verified backups, index replication and restore drills for a PACS."""
    _setup_logging(verbose, quiet)
    app = App(config_path, as_json, verbose, quiet)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("drctl: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # third-party chatter stays quiet unless debugging
    for noisy in ("botocore", "boto3", "urllib3", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    # pynetdicom logs a failed association at ERROR, with a traceback when TLS failed;
    # drctl reports the failure itself, once, as a typed error (the reason included)
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose >= 3 else logging.CRITICAL)


def _raise_interrupted(signum, _frame):
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the command and exits with its code; never a traceback."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in (argv or sys.argv[1:]))
    try:
        rv = cli.main(args=argv, prog_name="drctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except (click.Abort, KeyboardInterrupt):
        sys.stderr.write("drctl: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except DrctlError as exc:
        _report(exc, verbose)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line, the traceback only with -v
        sys.stderr.write(f"drctl: internal error: {type(exc).__name__}: {exc}\n")
        if verbose:
            traceback.print_exc()
        else:
            sys.stderr.write("drctl: this is a bug in drctl; run with -v for details\n")
        sys.exit(EXIT_PROBLEMS)
    sys.exit(rv if isinstance(rv, int) else 0)


def _report(exc: DrctlError, verbose: bool) -> None:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        sys.stderr.write(f"drctl: error: {line}\n")
    if verbose and exc.detail:
        for line in exc.detail.strip().splitlines()[-20:]:
            sys.stderr.write(f"  | {line}\n")
