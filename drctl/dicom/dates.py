"""StudyDate ranges for C-FIND: parsing ``YYYYMMDD-YYYYMMDD`` and halving a range when
the peer truncates its answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Open ends are kept open in the query text; these bound them only for splitting.
_FLOOR = dt.date(1, 1, 1)
_CEILING = dt.date(9999, 12, 31)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of study dates; ``None`` marks an open end."""

    start: dt.date | None
    end: dt.date | None

    @classmethod
    def parse(cls, text: str) -> DateRange:
        """Parse ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD`` (one day), ``YYYYMMDD-`` or
        ``-YYYYMMDD``. Raises ``ValueError`` for anything else or a reversed range."""
        text = text.strip()
        if "-" not in text:
            day = _date(text)
            return cls(day, day)
        first, _, second = text.partition("-")
        start = _date(first) if first else None
        end = _date(second) if second else None
        if start is None and end is None:
            raise ValueError(f"date range {text!r} has no date")
        if start and end and start > end:
            raise ValueError(f"date range {text!r} ends before it starts")
        return cls(start, end)

    def query_text(self) -> str:
        """The range as a DICOM DA range matching value."""
        if self.start is not None and self.start == self.end:
            return _text(self.start)
        return f"{_text(self.start) if self.start else ''}-{_text(self.end) if self.end else ''}"

    @property
    def is_single_day(self) -> bool:
        return (self.start or _FLOOR) == (self.end or _CEILING)

    def halves(self) -> tuple[DateRange, DateRange]:
        """Split into two disjoint ranges covering the same days (open ends stay open).
        Raises ``ValueError`` for a single day."""
        if self.is_single_day:
            raise ValueError("a single day cannot be split")
        low = self.start or _FLOOR
        high = self.end or _CEILING
        middle = low + (high - low) // 2
        return DateRange(self.start, middle), DateRange(middle + dt.timedelta(days=1), self.end)


def _date(text: str) -> dt.date:
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{text!r} is not a date in YYYYMMDD form")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _text(day: dt.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"
