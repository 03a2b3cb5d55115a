"""Values with units, as people write them in scenario files: ``500ms``, ``2s``, ``10/s``, ``5Mbit``.

Plain numbers are accepted too and mean the base unit (seconds, per second, bit/s), so a
generated scenario can use floats. Each parser raises ``ValueError`` with the allowed forms, which
the scenario loader turns into a located error message. Every value must be finite and within
:mod:`twin.limits` (``1e400s`` is infinity once parsed: it is rejected here, not in the run).
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from twin.limits import MAX_BITRATE_BPS, MAX_DURATION_S, MAX_RATE_HZ

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_DUR_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1000.0, "min": 1 / 60.0, "m": 1 / 60.0, "h": 1 / 3600.0}
_BIT_UNITS = {"bit": 1.0, "bps": 1.0, "kbit": 1e3, "kbps": 1e3, "mbit": 1e6, "mbps": 1e6,
              "gbit": 1e9, "gbps": 1e9}


def parse_duration(v: object) -> float:
    """``"500ms"`` -> 0.5; ``2`` -> 2.0 (seconds)."""
    if isinstance(v, bool):
        raise ValueError("a duration like 500ms, 2s, 1.5min or 1h (got a boolean)")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError(f"a duration must not be negative (got {v})")
        return _bounded(float(v), MAX_DURATION_S, "a duration", "30 days (2592000s)", v)
    m = re.fullmatch(_NUM + r"\s*([a-z]+)", str(v).strip().lower())
    if not m or m.group(2) not in _DUR_UNITS:
        raise ValueError(f"a duration like 500ms, 2s, 1.5min or 1h; units: {', '.join(_DUR_UNITS)} (got {v!r})")
    return _bounded(float(m.group(1)) * _DUR_UNITS[m.group(2)], MAX_DURATION_S, "a duration",
                    "30 days (2592000s)", v)


def _positive_with_unit(v: object, pattern: str, units: dict[str, float], what: str, like: str,
                        limit: float, shown: str) -> float:
    """A positive number, bare (the base unit) or followed by one of ``units`` (``pattern`` puts
    the unit in group 2), finite and at most ``limit``: the shared rule of rates and bit rates."""
    if isinstance(v, bool):
        raise ValueError(f"{what} like {like} (got a boolean)")
    if isinstance(v, int | float):
        x = float(v)
    else:
        m = re.fullmatch(_NUM + pattern, str(v).strip().lower())
        if not m or m.group(2) not in units:
            raise ValueError(f"{what} like {like} (got {v!r})")
        x = float(m.group(1)) * units[m.group(2)]
    if not x > 0:
        raise ValueError(f"{what} must be positive (got {v!r})")
    return _bounded(x, limit, what, shown, v)


def parse_rate(v: object) -> float:
    """``"10/s"`` -> 10.0 events per second; ``"30/min"`` -> 0.5."""
    return _positive_with_unit(v, r"\s*/\s*([a-z]+)", _RATE_UNITS, "a rate", "10/s, 500/min or 1/ms",
                               MAX_RATE_HZ, "1000/s")


def parse_bitrate(v: object) -> float:
    """``"5Mbit"`` -> 5e6 bit/s."""
    return _positive_with_unit(v, r"\s*([a-z]+)(?:/s)?", _BIT_UNITS, "a bit rate", "5Mbit, 100kbit or 1Gbit",
                               MAX_BITRATE_BPS, "1000Gbit")


def _bounded(x: float, limit: float, what: str, shown: str, raw: object) -> float:
    """``x`` if finite and at most ``limit``; else the error naming the limit."""
    if not math.isfinite(x) or x > limit:
        raise ValueError(f"{what} must be finite and at most {shown} (got {raw!r})")
    return x


def fmt_duration(s: float) -> str:
    if s == 0:
        return "0s"
    if s < 1:
        return f"{s * 1000:g}ms"
    return f"{s:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(fmt_duration, return_type=str),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^[0-9.]+\s*(us|ms|s|sec|m|min|h)$",
                    "description": "duration: 500ms, 2s, 1.5min, 1h, or a number of seconds"}),
]
Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    WithJsonSchema({"type": ["string", "number"], "description": "rate: 10/s, 30/min, or a number per second"}),
]
Bitrate = Annotated[
    float,
    BeforeValidator(parse_bitrate),
    WithJsonSchema({"type": ["string", "number"], "description": "bit rate: 5Mbit, 100kbit, 1Gbit or bit/s"}),
]
