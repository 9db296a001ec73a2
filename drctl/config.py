"""One TOML file -> validated, typed, frozen settings.

Every problem is reported at once, each naming the file, the key and the reason
(:class:`drctl.errors.ConfigError`, exit 2). Bad values are refused, never replaced by a
default. Secrets stay references (:class:`drctl.secrets.SecretRef`) until an adapter needs
them. The shape follows shared/design/config-example.toml.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    field_validator,
)

from drctl.errors import ConfigError
from drctl.secrets import SecretRef

CONFIG_ENV = "DRCTL_CONFIG"
DEFAULT_PATHS = ("./drctl.toml", "/etc/drctl/drctl.toml")

# --- value types ---------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer is a typo (and overflows thread waits: threading.TIMEOUT_MAX).
MAX_DURATION = 3650 * 86400.0


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"10m"``, ``"1h30m"``, ``"2d"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 10m, 4h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return _bounded(float(value), value)
    if not isinstance(value, str):
        raise ValueError("must be a duration like 30s, 10m, 4h or 1d")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 10m, 4h, 1d, 1h30m)")
    return _bounded(total, value)


def _bounded(seconds: float, value: Any) -> float:
    if not seconds <= MAX_DURATION:  # also inf and nan
        raise ValueError(f"{str(value)[:40]!r} is longer than 3650d")
    return seconds


def format_duration(seconds: float | None) -> str:
    """Seconds -> a short human duration (``"1h 05m"``, ``"42s"``)."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {sec:02d}s"


def _secret(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    return SecretRef.parse(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Secret = Annotated[SecretRef, BeforeValidator(_secret), PlainSerializer(str)]


def parse_schedule(value: str) -> tuple[str, Any]:
    """``cron:EXPR`` -> ("cron", EXPR); ``every:DURATION`` -> ("every", seconds);
    ``off`` -> ("off", None). Raises ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError('must be "cron:<crontab expression>", "every:<duration>" or "off"')
    if value.strip() == "off":
        return ("off", None)
    kind, sep, rest = value.partition(":")
    if kind == "cron" and sep:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(rest.strip(), timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {rest.strip()!r}: {exc}") from None
        return ("cron", rest.strip())
    if kind == "every" and sep:
        seconds = parse_duration(rest)
        if seconds < 1:
            raise ValueError("every: interval must be at least 1s")
        return ("every", seconds)
    raise ValueError('must be "cron:<crontab expression>", "every:<duration>" or "off"')


def _schedule(value: Any) -> str:
    parse_schedule(value)
    return value.strip()


Schedule = Annotated[str, BeforeValidator(_schedule)]


def _command(value: Any) -> tuple[str, ...]:
    """A command as configured (string, split like a shell would, or a list) -> argv."""
    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"cannot be parsed as a command: {exc}") from None
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        argv = tuple(value)
    else:
        raise ValueError("must be a command (a string or a list of strings)")
    if not argv:
        raise ValueError("must not be empty")
    return argv


Command = Annotated[tuple[str, ...], BeforeValidator(_command)]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "drctl"


def local_agent() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ------------------------------------------------------------------------------


class Timeouts(_Model):
    dicom: Duration = 30.0
    restic_idle: Duration = 600.0
    node_start: Duration = 300.0
    repository: Duration = 60.0  # opening a repository (reachability, password)
    lock_wait: Duration = 3600.0  # queueing behind another drctl operation on a repository
    command: Duration = 600.0  # start/stop/snapshot commands


class Controller(_Model):
    aet: str = Field("DRCTL", min_length=1, max_length=16)
    catalog: str | None = None
    catalog_password: Secret | None = None
    site: str = Field("site", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    phi_key: Secret | None = None
    data_dir: Path | None = None
    timeouts: Timeouts = Timeouts()
    heartbeat: Duration = 10.0
    stale_after: Duration = 60.0
    # scheduler leadership per agent: a lease renewed every lease_ttl/3, taken over by
    # another daemon of the same agent when it expires
    lease_ttl: Duration = 15.0

    @property
    def state_dir(self) -> Path:
        return self.data_dir or default_data_dir()

    @property
    def catalog_url(self) -> str:
        if self.catalog:
            return self.catalog
        return f"sqlite:///{self.state_dir / 'catalog.db'}"


class PruneCredentials(_Model):
    aws_access_key_id: Secret
    aws_secret_access_key: Secret


class Retention(_Model):
    last: int | None = Field(None, ge=1)
    hourly: int | None = Field(None, ge=1)
    daily: int | None = Field(None, ge=1)
    weekly: int | None = Field(None, ge=1)
    monthly: int | None = Field(None, ge=1)
    yearly: int | None = Field(None, ge=1)
    within: str | None = None


class Repository(_Model):
    url: str = Field(min_length=1)
    password: Secret
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_region: str | None = None
    prune_credentials: PruneCredentials | None = None
    retention: Retention = Retention(daily=7, weekly=5, monthly=12, yearly=7)
    prune_max_share: float = Field(0.2, gt=0, le=1)
    check_read_subset: str = "1/28"
    cacert: Path | None = None
    insecure_tls: StrictBool = False
    # the agent whose daemon runs this repository's check and prune jobs (default: the
    # agent of the first primary node that uses it)
    agent: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if ":" in value.split("/")[0] and not value.startswith(
            ("s3:", "sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:", "local:")
        ):
            raise ValueError("unknown repository scheme (use s3:..., a path, or a restic URL)")
        return value

    @field_validator("check_read_subset")
    @classmethod
    def _subset(cls, value: str) -> str:
        if re.fullmatch(r"\d+/\d+", value):
            n, m = (int(x) for x in value.split("/"))
            if not 1 <= n <= m:
                raise ValueError("n/m needs 1 <= n <= m")
        elif not re.fullmatch(r"\d+(\.\d+)?%", value):
            raise ValueError('must be "n/m" (rotating) or a percentage like "5%"')
        return value

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")


class Tls(_Model):
    ca: Path
    cert: Path | None = None
    # the private key of ``cert``: file:PATH is used in place; env: and command: give the
    # PEM text itself
    key: Secret | None = None
    key_password: Secret | None = None  # when the key is encrypted


class Node(_Model):
    kind: Literal["orthanc"] = "orthanc"
    role: Literal["primary", "standby"] = "primary"
    agent: str = Field(default_factory=local_agent, min_length=1)
    aet: str = Field(min_length=1, max_length=16)
    host: str = "127.0.0.1"
    port: int = Field(4242, ge=1, le=65535)
    rest: str | None = None
    rest_username: str | None = None
    rest_password: Secret | None = None
    storage: Path
    index: str
    index_password: Secret | None = None
    index_copy: Literal["stop-start", "command", "online"] | None = None
    snapshot_command: Command | None = None
    start: Command | None = None
    stop: Command | None = None
    repository: str | None = None
    vanished_alarm: float = Field(0.01, ge=0, le=1)
    modified_alarm: float = Field(0.01, ge=0, le=1)
    replication: Literal["dump", "streaming", "sqlite"] | None = None
    primary: str | None = None
    tls: Tls | None = None

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ValueError('must be "sqlite:/path/to/index" or "postgresql://user@host/db"')
        return value

    @property
    def index_kind(self) -> str:
        return "sqlite" if self.index.startswith("sqlite:") else "postgresql"

    @property
    def index_path(self) -> Path | None:
        return Path(self.index.removeprefix("sqlite:")) if self.index_kind == "sqlite" else None

    @property
    def index_copy_method(self) -> str:
        if self.index_copy:
            return self.index_copy
        return "online" if self.index_kind == "postgresql" else "stop-start"


class ScheduleSettings(_Model):
    backup: Schedule | None = None
    index_copy: Schedule | None = None
    replicate: Schedule | None = None
    check: Schedule | None = None
    prune: Schedule | None = None
    drill: Schedule | None = None
    grace: Duration = 3600.0


class Drill(_Model):
    mode: str = "sandbox"
    scope: Literal["auto", "full", "partial"] = "auto"
    sample_instances: int = Field(50, ge=0)
    sample_studies: int = Field(10, ge=0)
    max_rto: Duration = 4 * 3600.0
    max_rpo: Duration = 6 * 3600.0
    full_max_bytes: int = Field(50 * 2**30, ge=0)
    report_dir: Path | None = None
    # where sandbox nodes live while a drill runs (default: <data_dir>/sandbox)
    sandbox_dir: Path | None = None
    # a PostgreSQL server where drctl may create and drop a temporary database for the
    # sandbox of a PostgreSQL-indexed node (e.g. postgresql://postgres@127.0.0.1:5432/postgres)
    sandbox_postgres: str | None = None
    sandbox_postgres_password: Secret | None = None
    sandbox_http_port: int | None = Field(None, ge=1, le=65535)
    verify_all: StrictBool = False
    # the agent whose daemon runs scheduled drills (default: the standby's agent for a
    # standby drill, else the agent of the first primary)
    agent: str | None = None


class Email(_Model):
    smtp: str
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: Secret | None = None
    starttls: StrictBool = True


class Metrics(_Model):
    listen: str = "127.0.0.1:9808"


class Notify(_Model):
    webhook: Secret | None = None
    email: Email | None = None
    pings: dict[str, str] = {}
    metrics: Metrics | None = None
    timeout: Duration = 10.0
    retries: int = Field(3, ge=0, le=10)


class Reports(_Model):
    redact_uids: StrictBool = False
    dir: Path | None = None


class Settings(_Model):
    controller: Controller = Controller()
    repository: dict[str, Repository] = Field(default_factory=dict)
    node: dict[str, Node] = Field(default_factory=dict)
    schedule: ScheduleSettings = ScheduleSettings()
    drill: Drill = Drill()
    notify: Notify = Notify()
    reports: Reports = Reports()
    # where the settings came from (for messages); not a config key
    source: str = Field("<memory>", exclude=True)

    def repository_agent(self, name: str) -> str:
        """The agent that runs ``name``'s check and prune jobs."""
        repo = self.repository[name]
        if repo.agent:
            return repo.agent
        for node_name, node in self.node.items():
            if node.role == "primary" and self.repository_of(node_name) == name:
                return node.agent
        return local_agent()

    def drill_agent(self) -> str:
        """The agent that runs scheduled drills."""
        if self.drill.agent:
            return self.drill.agent
        if self.drill.mode != "sandbox" and self.drill.mode in self.node:
            return self.node[self.drill.mode].agent
        primaries = self.primaries()
        return next(iter(primaries.values())).agent if primaries else local_agent()

    def repository_of(self, node_name: str) -> str:
        """Name of the repository that holds ``node_name``'s snapshots."""
        node = self.node[node_name]
        if node.repository:
            return node.repository
        return next(iter(self.repository))

    def nodes_of(self, agent: str | None) -> dict[str, Node]:
        return {n: v for n, v in self.node.items() if agent is None or v.agent == agent}

    def primaries(self) -> dict[str, Node]:
        return {n: v for n, v in self.node.items() if v.role == "primary"}

    def standbys(self) -> dict[str, Node]:
        return {n: v for n, v in self.node.items() if v.role == "standby"}


# --- loading -------------------------------------------------------------------------------


def find_config(explicit: str | None) -> Path:
    """The config path per cli.md: --config, $DRCTL_CONFIG, ./drctl.toml, /etc/drctl/drctl.toml.
    Raises ConfigError when none exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    for candidate in DEFAULT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        "drctl.toml",
        [
            (
                "(file)",
                "no configuration found: pass --config PATH, set DRCTL_CONFIG, or create "
                "./drctl.toml or /etc/drctl/drctl.toml",
            )
        ],
    )


def file_exposure(path: str | os.PathLike) -> str | None:
    """A warning when the config file is accessible by other users (it names every secret's
    location and the site's layout), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & stat.S_IRWXO:
        return (f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                "chmod o-rwx it")
    return None


def load(path: str | os.PathLike) -> Settings:
    """Read and validate ``path``. Raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), [("(file)", "does not exist")]) from None
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", f"cannot be read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), [("(file)", "is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("(file)", f"is not valid TOML: {exc}")]) from None
    return from_mapping(raw, source=str(path))


def from_mapping(raw: Mapping[str, Any], source: str = "<memory>") -> Settings:
    """Validate an already parsed mapping. Raises :class:`ConfigError`."""
    try:
        settings = Settings.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None
    problems = _cross_checks(settings)
    if problems:
        raise ConfigError(source, problems)
    return _with_secret_keys(settings)


def _loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "is required"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append((_loc(err["loc"]), msg))
    return problems


def _cross_checks(s: Settings) -> list[tuple[str, str]]:
    """Checks that span sections; all of them, at once."""
    problems = []
    for name, node in s.node.items():
        key = f"node.{name}"
        if node.repository and node.repository not in s.repository:
            problems.append((f"{key}.repository", f"names no [repository.{node.repository}]"))
        if node.role == "primary" and not node.repository and len(s.repository) > 1:
            problems.append((f"{key}.repository", "is required when several repositories exist"))
        if node.role == "primary" and not s.repository:
            problems.append((f"{key}.repository", "no [repository.*] section is configured"))
        if node.index_copy == "command" and not node.snapshot_command:
            problems.append((f"{key}.snapshot_command", 'is required with index_copy = "command"'))
        if node.index_copy == "online" and node.index_kind == "sqlite":
            problems.append(
                (
                    f"{key}.index_copy",
                    '"online" needs a PostgreSQL index; SQLite is '
                    'locked while Orthanc runs (use "stop-start" or "command")',
                )
            )
        if (
            node.role == "primary"
            and node.index_copy_method == "stop-start"
            and not (node.stop and node.start)
        ):
            problems.append(
                (
                    f"{key}.stop",
                    'start and stop commands are required with index_copy = "stop-start"',
                )
            )
        if node.primary and node.primary not in s.node:
            problems.append((f"{key}.primary", f"names no [node.{node.primary}]"))
        if node.tls and node.tls.cert and not node.tls.key:
            problems.append((f"{key}.tls.key", "is required with tls.cert"))
    if s.drill.mode != "sandbox":
        target = s.node.get(s.drill.mode)
        if target is None:
            problems.append(
                ("drill.mode", f'must be "sandbox" or a node name; no [node.{s.drill.mode}]')
            )
        elif target.role != "standby":
            problems.append(("drill.mode", f'node {s.drill.mode} is not role = "standby"'))
    for job in s.notify.pings:
        if job not in ScheduleSettings.model_fields:
            problems.append((f"notify.pings.{job}", "is not a scheduled job name"))
    if s.notify.metrics:
        host, _, port = s.notify.metrics.listen.rpartition(":")
        if not host or not port.isdigit():
            problems.append(("notify.metrics.listen", 'must be "host:port"'))
    return problems


def _with_secret_keys(s: Settings) -> Settings:
    """Return settings whose SecretRefs know their config key, for error messages."""

    def walk(obj: Any, prefix: str) -> Any:
        if isinstance(obj, SecretRef):
            return SecretRef(obj.scheme, obj.target, prefix)
        if isinstance(obj, BaseModel):
            updates = {}
            for name in type(obj).model_fields:
                value = getattr(obj, name)
                new = walk(value, f"{prefix}.{name}" if prefix else name)
                if new is not value:
                    updates[name] = new
            return obj.model_copy(update=updates) if updates else obj
        if isinstance(obj, dict):
            new = {k: walk(v, f"{prefix}.{k}") for k, v in obj.items()}
            return new if any(new[k] is not obj[k] for k in obj) else obj
        return obj

    return walk(s, "")


def secret_refs(s: Settings) -> list[SecretRef]:
    """Every secret reference in the settings (for checks and escrow instructions)."""
    found: list[SecretRef] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, SecretRef):
            found.append(obj)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                walk(getattr(obj, name))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)

    walk(s)
    return found
