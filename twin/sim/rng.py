"""A tiny counter-free PRNG (xoshiro256**) usable inside numba kernels.

Why by hand: numba's ``np.random`` keeps one hidden global stream per thread, so two twins in one
process (a loop-on and a loop-off run, a sweep) would perturb each other and break "same scenario
and seed give identical results". Here every stream is an explicit ``uint64[4]`` array owned by
one simulation, seeded through NumPy's SeedSequence.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_U64 = nb.uint64


def new_stream(seed: int, name: str) -> np.ndarray:
    """Independent stream for ``(seed, name)``: routing, data plane, faults never share one."""
    tag = int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag & 0xFFFFFFFF, tag >> 32])
    state = ss.generate_state(4, dtype=np.uint64)
    if not state.any():  # xoshiro must not start at all-zero
        state[0] = np.uint64(1)
    return state


@nb.njit(inline="always")
def _rotl(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


@nb.njit(cache=True, inline="always")
def next_u64(s):
    """One step of xoshiro256** on state ``s`` (uint64[4]), returning a uint64."""
    result = _rotl(s[1] * _U64(5), 7) * _U64(9)
    t = s[1] << _U64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@nb.njit(cache=True, inline="always")
def uniform(s):
    """Float in [0, 1) with 53 random bits."""
    return float(next_u64(s) >> _U64(11)) * (1.0 / 9007199254740992.0)
