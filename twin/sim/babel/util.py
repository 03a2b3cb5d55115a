"""babeld's ``util.c``: 16-bit sequence number arithmetic (RFC 8966 section 3.2.1), and the message
timings that several of babeld's files use."""

from __future__ import annotations

URGENT_JITTER = 0.010  # s: babeld flushes urgent messages within ~10 ms
REQUEST_HOPS = 127


def seqno_plus(s: int, k: int) -> int:
    return (s + k) & 0xFFFF


def seqno_minus(a: int, b: int) -> int:
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def seqno_compare(a: int, b: int) -> int:
    if a == b:
        return 0
    return 1 if ((b - a) & 0x8000) else -1
