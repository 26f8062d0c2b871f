"""Date-time query parameters of the admin API (``/admin/audit``'s ``since`` and ``until``, ``/admin/spend``'s
``from`` and ``to``).

The OpenAPI document calls them ``date-time``, so they are ISO 8601 text, never a bare number (pydantic alone
would read ``0.5`` as seconds after the epoch). Each is converted to UTC here, so a value whose UTC form falls
outside the years 1 to 9999 (``0001-01-01T00:00:00+01:00``) is a 400 naming the parameter rather than an overflow
later. ``AwareTime`` also requires the time zone (``Z`` or an offset); ``UtcTime`` reads a date or a date-time
without one as UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ].*)?$")
_EXAMPLE = "such as 2025-06-01T00:00:00Z"


def _parse(value: Any, naive_is_utc: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, str) and _ISO.match(value):
        try:
            t = dt.datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time ({_EXAMPLE})") from None
    else:
        raise ValueError(f"must be an ISO 8601 date-time ({_EXAMPLE}), not a number or other text")
    if t.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"the date-time must give its time zone, as 'Z' or an offset ({_EXAMPLE})")
        return t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the date-time is outside the years 1 to 9999 in UTC") from None


def _aware(value: Any) -> dt.datetime:
    return _parse(value, naive_is_utc=False)


def _utc(value: Any) -> dt.datetime:
    return _parse(value, naive_is_utc=True)


AwareTime = Annotated[dt.datetime, BeforeValidator(_aware)]
"""An ISO 8601 date-time with its time zone, as UTC."""

UtcTime = Annotated[dt.datetime, BeforeValidator(_utc)]
"""An ISO 8601 date or date-time, as UTC (one without a time zone is read as UTC)."""
