"""Config validation: typed settings, every error at once with file and key, secrets as
references only."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from drctl import config
from drctl.errors import ConfigError
from drctl.secrets import SecretRef, SecretUnavailable

EXAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "config-example.toml"


def minimal(**over) -> dict:
    doc = {
        "controller": {"site": "s1"},
        "repository": {"r": {"url": "/tmp/repo", "password": "env:P"}},
        "node": {
            "n": {
                "aet": "ORTHANC",
                "storage": "/data",
                "index": "sqlite:/data/index",
                "start": "true",
                "stop": "true",
            }
        },
    }
    doc.update(over)
    return doc


def test_example_config_loads_typed_and_frozen():
    s = config.load(EXAMPLE)
    assert s.node["primary"].start == ("systemctl", "start", "orthanc")
    assert s.node["standby"].index_kind == "postgresql"
    assert s.drill.max_rto == 4 * 3600
    assert s.controller.timeouts.restic_idle == 600
    assert str(s.repository["offsite"].password) == "file:/etc/drctl/restic.pass"
    with pytest.raises(ValidationError, match="frozen"):
        s.controller.site = "x"


def test_every_error_reported_at_once_with_file_and_key():
    raw = tomllib.loads(EXAMPLE.read_text())
    raw["node"]["primary"]["port"] = "not-a-port"
    raw["node"]["primary"]["colour"] = "blue"
    raw["schedule"]["backup"] = "cron:99 * * * *"
    raw["drill"]["max_rto"] = "four hours"
    raw["repository"]["offsite"]["password"] = "hunter2"
    with pytest.raises(ConfigError) as err:
        config.from_mapping(raw, source="/etc/drctl/drctl.toml")
    keys = {k for k, _ in err.value.problems}
    assert keys == {
        "node.primary.port",
        "node.primary.colour",
        "schedule.backup",
        "drill.max_rto",
        "repository.offsite.password",
    }
    text = str(err.value)
    assert all(line.startswith("/etc/drctl/drctl.toml: ") for line in text.splitlines())
    assert "hunter2" not in text  # a literal secret is refused, not echoed
    assert err.value.exit_code == 2


def test_cross_section_problems():
    doc = minimal()
    doc["node"]["n"]["repository"] = "nope"
    doc["node"]["n"]["index_copy"] = "online"
    doc["drill"] = {"mode": "n"}
    with pytest.raises(ConfigError) as err:
        config.from_mapping(doc)
    keys = {k for k, _ in err.value.problems}
    assert {"node.n.repository", "node.n.index_copy", "drill.mode"} <= keys


def test_stop_start_needs_commands():
    doc = minimal()
    del doc["node"]["n"]["start"], doc["node"]["n"]["stop"]
    with pytest.raises(ConfigError) as err:
        config.from_mapping(doc)
    assert "node.n.stop" in dict(err.value.problems)


@pytest.mark.parametrize(
    "text,seconds",
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800), (45, 45), ("250ms", 0.25)],
)
def test_durations(text, seconds):
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["4 hours", "", "10x", "-5s", True, "m10"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        config.parse_duration(bad)


@pytest.mark.parametrize("good", ["cron:0 */4 * * *", "every:15m", "off", "cron:0 6 * * SUN"])
def test_schedules(good):
    config.parse_schedule(good)


@pytest.mark.parametrize("bad", ["cron:61 * * * *", "every:0s", "daily", "every:soon"])
def test_bad_schedules(bad):
    with pytest.raises(ValueError):
        config.parse_schedule(bad)


def test_secret_references_resolve_late_and_never_print(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("s3cr3t-file\n")
    f.chmod(0o600)
    monkeypatch.setenv("DRCTL_T_PW", "s3cr3t-env")
    refs = [
        SecretRef.parse(f"file:{f}"),
        SecretRef.parse("env:DRCTL_T_PW"),
        SecretRef.parse("command:printf %s%s s3c r3t-cmd"),
    ]
    assert [r.resolve() for r in refs] == ["s3cr3t-file", "s3cr3t-env", "s3cr3t-cmd"]
    assert all("s3cr3t" not in repr(r) and "s3cr3t" not in str(r) for r in refs)


def test_unresolvable_secrets_name_their_key(tmp_path):
    ref = SecretRef("env", "DRCTL_SURELY_UNSET", "repository.r.password")
    with pytest.raises(SecretUnavailable, match="repository.r.password"):
        ref.resolve()
    failing = SecretRef("command", "false", "controller.phi_key")
    with pytest.raises(SecretUnavailable, match="controller.phi_key: secret command exited 1"):
        failing.resolve()


def test_loaded_settings_know_secret_keys():
    s = config.from_mapping(minimal())
    assert s.repository["r"].password.key == "repository.r.password"


def test_secret_file_exposure(tmp_path):
    f = tmp_path / "pw"
    f.write_text("x")
    f.chmod(0o644)
    assert "chmod 600" in SecretRef("file", str(f), "k").exposure()
    f.chmod(0o600)
    assert SecretRef("file", str(f), "k").exposure() is None


def test_config_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRCTL_CONFIG", raising=False)
    if not os.path.exists("/etc/drctl/drctl.toml"):
        with pytest.raises(ConfigError, match="no configuration found"):
            config.find_config(None)
    (tmp_path / "drctl.toml").write_text("")
    assert config.find_config(None) == Path("./drctl.toml")
    monkeypatch.setenv("DRCTL_CONFIG", "/x/y.toml")
    assert config.find_config(None) == Path("/x/y.toml")
    assert config.find_config("/a.toml") == Path("/a.toml")


def test_unreadable_and_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[controller\nsite=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")
