"""Every `drctl ...` command in runbooks/ (and the README) parses against the real command
line: the command exists and every option it uses is one the command accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from drctl.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "runbooks").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def drctl_commands(text: str) -> list[str]:
    lines = []
    for _lang, body in FENCE.findall(text):
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("drctl "):
                lines.append(line)
    return lines


def check_command(line: str) -> None:
    """Raise AssertionError naming what does not exist."""
    tokens = shlex.split(line)[1:]
    command: click.Command = cli
    ctx = click.Context(cli)
    path = ["drctl"]
    while tokens:
        token = tokens[0]
        if token.startswith("-"):
            name = token.split("=", 1)[0]
            opts = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            opts |= {"--help", "-h"}
            assert name in opts, f"{' '.join(path)}: unknown option {name} in: {line}"
            param = next((p for p in command.params if name in (*p.opts, *p.secondary_opts)), None)
            takes_value = param is not None and not getattr(param, "is_flag", False) \
                and not getattr(param, "count", False)
            tokens = tokens[2:] if takes_value and "=" not in token else tokens[1:]
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, token)
            assert sub is not None, f"{' '.join(path)}: unknown command {token!r} in: {line}"
            command, path = sub, [*path, token]
            tokens = tokens[1:]
            continue
        tokens = tokens[1:]  # an argument
    assert not isinstance(command, click.Group), f"incomplete command: {line}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_drctl_command_in_the_docs_parses(doc: Path):
    commands = drctl_commands(doc.read_text())
    for line in commands:
        check_command(line)


def test_the_checker_catches_mistakes():
    with pytest.raises(AssertionError, match="unknown command"):
        check_command("drctl backup sprint")
    with pytest.raises(AssertionError, match="unknown option --colour"):
        check_command("drctl backup run --colour red")
    check_command('drctl --json restore study "$STUDY_UID" --to primary --dry-run')


def test_runbooks_have_the_required_sections():
    for doc in (ROOT / "runbooks").glob("*.md"):
        if doc.name == "README.md":
            continue
        text = doc.read_text()
        for section in ("**When", "Prerequisites", "## Verify", "## Roll back"):
            assert section in text, f"{doc.name} lacks {section}"
        assert drctl_commands(text), f"{doc.name} has no drctl command"
