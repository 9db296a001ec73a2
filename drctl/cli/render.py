"""Small rendering helpers shared by commands (human output only)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def short_time(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(*columns, title=title, box=None, pad_edge=False, header_style="bold")
    return t


STATE_STYLE = {"succeeded": "green", "passed": "green", "warning": "yellow", "failed": "red",
               "interrupted": "magenta", "running": "cyan"}


def state(text: str) -> str:
    style = STATE_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else text
