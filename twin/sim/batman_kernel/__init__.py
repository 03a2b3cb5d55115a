"""Compiled B.A.T.M.A.N. IV OGM kernel: the per-originator flood, in kernel order, fused.

Why a hand-written numba kernel rather than NumPy array passes: an OGM flood is a sequence of
dependent decisions (first copy or duplicate, best next hop or not, forward or drop) whose order
matters, and batman-adv's failover is exactly the product of that order (each new sequence number
arriving another way pushes a 0 into the stale neighbour's ring). Lock-step array rounds over all
originators lose each node's own OGM phase and jitter, and with it the seed-to-seed spread and the
multi-stage cascades of real failovers. A flood touches only its originator's state slab, so it
stays in cache (measurements in ``docs/performance.md``).

Model (kernel ``net/batman-adv/bat_iv_ogm.c`` defaults; constants in :mod:`twin.sim.batman_kernel.records`):

* each node originates an OGM every ``orig_interval`` +- ``jitter`` (own random phase);
* receive: own OGM echoed by a direct neighbour marks the echo window; drop copies whose previous
  sender is us or that carry NOT_BEST; sequence numbers classify NO_DUP / ORIG_DUP / NEIGH_DUP;
  reboot protection (a jump of >= 64 back or >= 65536 ahead resets at most once per 30 s);
* ``tq = tq_in * tq_own * asym // 255**2`` from the 64-wide recv/echo windows; a copy that reaches
  x within the echo delay of x's latest OGM (the time its neighbour's rebroadcast of that OGM took
  to come back) counts one echo short, as the kernel's window slides when x sends and the echo bit
  is set only when the rebroadcast arrives (255 * 63/64 = 251 on a loss-free link);
* ``tq >= 1`` and (new seqno or TTL within 3 of the first copy): push into the ring of 5 for
  (orig, neighbour); a new seqno first pushes 0 into the other neighbours' rings; switch next hop
  only on a strictly higher average of non-zero entries;
* forward with ``tq * (255 - hop_penalty) // 255`` and TTL-1: always when the sender is the
  originator (flagged NOT_BEST unless it is our route), otherwise only copies from the best next
  hop that are not NEIGH_DUP (current kernels, not first-copy-only);
* a flood is applied at its origination time; the per-hop forward delay U[0, jitter) plus
  U[0, aggregation) (the whole aggregation time for a copy straight from its originator: it carries
  DIRECTLINK, which the kernel never aggregates) orders receptions inside the flood (first copy
  wins) and times them against the receivers' own OGMs (the echo delay above); it does not delay
  route updates (a flood completes in a few hundred ms, below the 1 s OGM period). Transmissions
  due at exactly the same time (only possible with zero forward jitter and aggregation) go out in
  the order they were queued;
* epochs of ``EPOCH_S`` (100 ms): floods read each link's TQ (``tq_own * asym``) as it was at the
  start of the epoch; the windows they move (recv windows of links from the originator, echo
  windows of links into it) are folded into the link TQs at the epoch's end. A link's TQ changes
  by at most one window slot per OGM of its two ends, so this lag of at most 100 ms is far below
  what the 64-OGM windows can resolve; real floods themselves take tens of ms to cross a mesh;
* every originator draws from its own random stream (losses on its flood, forward delays, its next
  OGM's jitter).

The last two make the floods of one epoch independent of each other: each writes only its own
originator's slab, so ``_advance`` runs a batch of them on all cores, and the result is the same
whichever core ran which flood (``tests/test_kernel_equivalence.py`` checks one core against two,
and both against a plain-Python version of the model).

The package, one room per job (``docs/layout.md``):

* :mod:`~twin.sim.batman_kernel.core` - the compiled flood loop, batches of floods on all cores, ``advance``;
* :mod:`~twin.sim.batman_kernel.records` - the packed record words and their bit operations, protocol constants;
* :mod:`~twin.sim.batman_kernel.intrinsics` - LLVM intrinsics (popcount, trailing zeros, prefetch, atomic add);
* :mod:`~twin.sim.batman_kernel.state` - ``State``: every array, allocated once; the origination heap;
* :mod:`~twin.sim.batman_kernel.purge` - neighbour and originator timeouts, owed ring zeros applied.

The data-plane walk over the routes the kernel leaves in ``xs`` is :mod:`twin.sim.dataplane`'s, shared
with the Babel model. How the hot loop is kept short, and what was measured slower, is in
``docs/performance.md``.
"""

from __future__ import annotations

from twin.sim.batman_kernel.core import advance
from twin.sim.batman_kernel.purge import purge, sync_rings
from twin.sim.batman_kernel.records import EXPECTED_SEQNO_RANGE, RESET_PROTECTION_S, RING, TQ_MAX, WINDOW
from twin.sim.batman_kernel.state import EPOCH_S, State, make_state, ring_avg

__all__ = [
    "EPOCH_S",
    "EXPECTED_SEQNO_RANGE",
    "RESET_PROTECTION_S",
    "RING",
    "TQ_MAX",
    "WINDOW",
    "State",
    "advance",
    "make_state",
    "purge",
    "ring_avg",
    "sync_rings",
]
