"""Bad configuration, generated: wrong types, missing and unknown keys, bad secret
references, bad cron expressions, bad durations. Whatever the mutation, drctl either
accepts the config or refuses it with a ConfigError (exit 2) whose problems name the
mutated key and the file — never another exception, never a traceback.

Each example goes through :func:`drctl.config.from_mapping` and, written as TOML, through
the CLI's own error path (``drctl.cli.main.main`` in-process); a fixed sample goes
through the real ``drctl`` executable.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drctl import config
from drctl.cli.main import main
from drctl.errors import ConfigError
from tests.support.drctl_env import DRCTL

EXAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "config-example.toml"
BASE = tomllib.loads(EXAMPLE.read_text())

# --- the document's keys ---------------------------------------------------------------


def _paths(doc: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in doc.items():
        path = (*prefix, key)
        out.append(path)
        if isinstance(value, dict):
            out += _paths(value, path)
    return out


def _get(doc: dict, path: tuple):
    for key in path:
        doc = doc[key]
    return doc


def _set(doc: dict, path: tuple, value) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _dotted(path: tuple) -> str:
    return ".".join(path)


ALL_PATHS = _paths(BASE)
TABLES = [()] + [p for p in ALL_PATHS if isinstance(_get(BASE, p), dict)]
# keys the schema requires (removing them must be refused by name)
REQUIRED = [
    ("repository", "offsite", "url"),
    ("repository", "offsite", "password"),
    ("node", "primary", "aet"),
    ("node", "primary", "storage"),
    ("node", "primary", "index"),
    ("node", "standby", "storage"),
    ("node", "standby", "tls", "ca"),
    ("notify", "email", "smtp"),
    ("notify", "email", "from"),
    ("notify", "email", "to"),
    ("repository", "offsite", "prune_credentials", "aws_access_key_id"),
]
SECRET_KEYS = [
    p
    for p in ALL_PATHS
    if isinstance(_get(BASE, p), str) and _get(BASE, p).startswith(("env:", "file:", "command:"))
]
SCHEDULE_KEYS = [("schedule", k) for k in BASE["schedule"]]
DURATION_KEYS = [
    ("controller", "timeouts", "dicom"),
    ("controller", "timeouts", "restic_idle"),
    ("controller", "timeouts", "node_start"),
    ("controller", "heartbeat"),
    ("controller", "stale_after"),
    ("controller", "lease_ttl"),
    ("drill", "max_rto"),
    ("drill", "max_rpo"),
    ("schedule", "grace"),
    ("notify", "timeout"),
]


# --- values --------------------------------------------------------------------------------

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3),
    ),
    max_leaves=6,
)
BAD_SECRETS = st.one_of(
    TEXT.filter(lambda t: not t.startswith(("env:", "file:", "command:"))),
    st.sampled_from(
        [
            "env:",
            "file:",
            "command:",
            "env:NOT VALID",
            "env:a-b",
            "command:'open",
            'command:"unbalanced',
            "hunter2",
            "env",
            ":env:X",
            "vault:kv/x",
        ]
    ),
    st.integers(),
    st.lists(TEXT, max_size=2),
)
BAD_CRON = st.one_of(
    st.builds(lambda t: "cron:" + t, TEXT),
    st.sampled_from(
        [
            "cron:61 * * * *",
            "cron:* * * *",
            "cron:0 0 32 * *",
            "cron:0 0 * 13 *",
            "cron:0 0 * * 8",
            "cron:",
            "cron:@daily",
            "cron:*/0 * * * *",
            "every:",
            "every:0s",
            "every:-5m",
            "every:soon",
            "daily",
            "cron :0 * * * *",
        ]
    ),
)
BAD_DURATIONS = st.one_of(
    TEXT,
    st.sampled_from(
        [
            "4 hours",
            "10x",
            "-5s",
            "m10",
            "1e400s",
            "9" * 400 + "s",
            "1.5.3s",
            "10mm",
            "s",
            "",
            "inf",
            "nan",
            "1h-30m",
        ]
    ),
    st.floats(max_value=-1e-9),
    st.just(True),
    st.lists(st.integers(), max_size=2),
    st.integers(min_value=1, max_value=2**63 - 1).map(lambda n: -n),
    st.integers(min_value=3650 * 86400 + 1, max_value=2**63 - 1),
    st.floats(min_value=1e10, allow_infinity=True, allow_nan=False),
)


@st.composite
def mutations(draw) -> tuple[str, tuple, dict]:
    """(kind, mutated key path, document)."""
    doc = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["wrong_type", "missing", "unknown", "secret", "cron", "duration"]))
    if kind == "wrong_type":
        path = draw(st.sampled_from(ALL_PATHS))
        _set(doc, path, draw(VALUES))
    elif kind == "missing":
        path = draw(st.sampled_from(REQUIRED))
        del _get(doc, path[:-1])[path[-1]]
    elif kind == "unknown":
        table = draw(st.sampled_from(TABLES))
        target = _get(doc, table)
        # dict-valued tables whose keys are names (repository.X, node.X, pings) accept
        # any name; add a key one level down there
        if table in (("repository",), ("node",)):
            table = (*table, draw(st.sampled_from(sorted(target))))
            target = _get(doc, table)
        if table == ("notify", "pings"):
            name = draw(st.sampled_from(["nightly", "weekly", "hourly_backup"]))
        else:
            name = draw(
                st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(
                    lambda k: k not in target
                )
            )
        path = (*table, name)
        target[name] = draw(VALUES)
    elif kind == "secret":
        path = draw(st.sampled_from(SECRET_KEYS))
        _set(doc, path, draw(BAD_SECRETS))
    elif kind == "cron":
        path = draw(st.sampled_from(SCHEDULE_KEYS))
        _set(doc, path, draw(BAD_CRON))
    else:
        path = draw(st.sampled_from(DURATION_KEYS))
        _get(doc, path[:-1])  # timeouts exists in the example
        _set(doc, path, draw(BAD_DURATIONS))
    return kind, path, doc


# --- TOML out ------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but for astral characters (TOML wants them raw) and DEL
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise TypeError(type(value))


def to_toml(doc: dict) -> str:
    """Every top-level key as ``key = <inline value>``: any document round-trips."""
    return "\n".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in doc.items()) + "\n"


def _names_key(problems: list[tuple[str, str]], path: tuple, kind: str) -> bool:
    dotted = _dotted(path)
    keys = [k for k, _ in problems]
    if any(k == dotted or k.startswith(dotted + ".") for k in keys):
        return True
    # a removed key may be reported by the cross-check that needs it, one level up
    return kind == "missing" and any(k.startswith(_dotted(path[:-1]) + ".") for k in keys)


@contextlib.contextmanager
def _logging_restored():
    """The CLI sets up logging for a process; give the test process its own back."""
    loggers = [
        logging.getLogger(n)
        for n in ("", "pynetdicom", "botocore", "boto3", "urllib3", "alembic", "apscheduler")
    ]
    saved = [(lg, lg.level, lg.handlers[:]) for lg in loggers]
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        for lg, level, handlers in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
        signal.signal(signal.SIGTERM, sigterm)


def _cli(config_path: Path) -> tuple[int, str]:
    """The CLI's own entry point, in-process: (exit code, stderr)."""
    err = io.StringIO()
    with (
        _logging_restored(),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            main(["--config", str(config_path), "--json", "snapshots", "list"])
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    return 0, err.getvalue()


# --- the properties ----------------------------------------------------------------------


def test_the_example_itself_is_valid():
    config.from_mapping(BASE)
    assert tomllib.loads(to_toml(BASE)) == BASE


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(mutations())
def test_mutated_config_is_refused_by_key_or_accepted(mutation):
    kind, path, doc = mutation
    try:
        config.from_mapping(doc, source="/etc/drctl/drctl.toml")
    except ConfigError as err:
        assert err.exit_code == 2
        assert err.problems, "a ConfigError without problems"
        assert _names_key(err.problems, path, kind), (kind, _dotted(path), err.problems)
        assert all(line.startswith("/etc/drctl/drctl.toml: ") for line in str(err).splitlines())
        return
    # accepted: only mutations that leave a valid config may get here
    assert kind not in ("missing", "unknown", "secret", "cron", "duration"), (
        kind,
        _dotted(path),
        _get(doc, path) if kind != "missing" else None,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(mutation=mutations())
def test_the_cli_error_path_exits_2_naming_the_key(mutation, tmp_path_factory):
    kind, path, doc = mutation
    try:
        config.from_mapping(doc)
    except ConfigError:
        pass
    else:
        return  # valid: nothing to refuse
    cfg = tmp_path_factory.mktemp("fuzz") / "drctl.toml"
    cfg.write_text(to_toml(doc), encoding="utf-8")
    assert tomllib.loads(cfg.read_text(encoding="utf-8")) == doc
    code, stderr = _cli(cfg)
    assert code == 2, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert _dotted(path[:2]) in stderr or _dotted(path[:1]) in stderr, stderr
    assert str(cfg) in stderr


REAL_CLI_SAMPLE = [
    ("wrong_type", ("node", "primary", "port"), [4242]),
    ("wrong_type", ("controller", "timeouts"), "30s"),
    ("missing", ("repository", "offsite", "password"), None),
    ("unknown", ("node", "standby", "tsl"), {"ca": "/x"}),
    ("secret", ("repository", "offsite", "password"), "correct horse"),
    ("secret", ("notify", "webhook"), "command:'unbalanced"),
    ("cron", ("schedule", "backup"), "cron:0 */4 * * * *"),
    ("duration", ("drill", "max_rto"), "four hours"),
    ("duration", ("controller", "heartbeat"), "9" * 400 + "s"),
]


@pytest.mark.parametrize(
    "kind,path,value", REAL_CLI_SAMPLE, ids=[f"{k}:{_dotted(p)}" for k, p, _ in REAL_CLI_SAMPLE]
)
def test_real_cli_exits_2_naming_the_key(kind, path, value, tmp_path):
    doc = copy.deepcopy(BASE)
    if kind == "missing":
        del _get(doc, path[:-1])[path[-1]]
    else:
        _set(doc, path, value)
    cfg = tmp_path / "drctl.toml"
    cfg.write_text(to_toml(doc))
    cfg.chmod(0o600)
    proc = subprocess.run(
        [DRCTL, "--config", str(cfg), "config", "check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{cfg}: {_dotted(path)}" in proc.stderr, proc.stderr
    if kind == "secret" and isinstance(value, str):
        assert value not in proc.stderr  # a literal secret is refused, not echoed
