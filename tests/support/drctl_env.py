"""A drctl installation for a test: a config file (secrets as file: references), a state
folder, and helpers to run the real CLI as a user would (a subprocess) or the actions
in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drctl import config as config_mod
from drctl.actions.context import Context
from drctl.catalog.db import Catalog

DRCTL = str(Path(sys.executable).with_name("drctl"))
RESTIC_PASSWORD = "correct horse battery staple 42"
PHI_KEY = "phi-key-for-tests-7c1f"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def to_toml(doc: dict) -> str:
    """A small TOML writer for test configs: [section] and [section.name] tables."""
    lines: list[str] = []

    def table(prefix: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not (isinstance(v, dict) and k in NESTED)}
        lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")

    NESTED: set[str] = set()
    for section, body in doc.items():
        if section in ("repository", "node"):
            for name, sub in body.items():
                table(f"{section}.{name}", sub)
        else:
            table(section, body)
    return "\n".join(lines)


@dataclass
class DrctlEnv:
    root: Path
    config_path: Path
    doc: dict
    env: dict = field(default_factory=dict)

    def write(self) -> Path:
        self.config_path.write_text(to_toml(self.doc))
        self.config_path.chmod(0o600)
        return self.config_path

    @property
    def settings(self):
        return config_mod.load(self.config_path)

    def context(self, trigger: str = "test") -> Context:
        settings = self.settings
        catalog = Catalog.open(settings.controller.catalog_url)
        return Context(settings=settings, catalog=catalog, trigger=trigger)

    def cli(self, *args: str, json_output: bool = True, timeout: float = 600,
            check_exit: int | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the real ``drctl`` as a user would. Asserts no traceback on stderr."""
        argv = [DRCTL, "--config", str(self.config_path)]
        if json_output:
            argv.append("--json")
        env = {**os.environ, **self.env, **(extra_env or {})}
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                              env=env)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check_exit is not None:
            assert proc.returncode == check_exit, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def cli_json(self, *args: str, expect: int | None = 0, **kw) -> Any:
        proc = self.cli(*args, check_exit=expect, **kw)
        return json.loads(proc.stdout)


def make_env(root: Path, *, repositories: dict, nodes: dict | None = None,
             controller: dict | None = None, **sections: dict) -> DrctlEnv:
    """A DrctlEnv in ``root`` with secrets written to 0600 files."""
    root.mkdir(parents=True, exist_ok=True)
    secrets = root / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "restic.pass").write_text(RESTIC_PASSWORD + "\n")
    (secrets / "phi.key").write_text(PHI_KEY + "\n")
    for f in secrets.iterdir():
        f.chmod(0o600)
    ctrl = {"site": "testsite", "data_dir": str(root / "state"),
            "catalog": f"sqlite:///{root / 'state' / 'catalog.db'}",
            "phi_key": f"file:{secrets / 'phi.key'}",
            "timeouts": {"dicom": "20s", "repository": "30s", "lock_wait": "120s",
                         "node_start": "60s", "restic_idle": "120s"},
            **(controller or {})}
    repos = {}
    for name, repo in repositories.items():
        repos[name] = {"password": f"file:{secrets / 'restic.pass'}", **repo}
    doc = {"controller": ctrl, "repository": repos, "node": nodes or {}, **sections}
    env = DrctlEnv(root, root / "drctl.toml", doc)
    env.write()
    return env


@pytest.fixture
def drctl_env_factory(tmp_path):
    def factory(**kw) -> DrctlEnv:
        return make_env(tmp_path / "drctl", **kw)

    return factory
