"""The Babel twin of one mesh: babeld 1.12's route selection, message by message.

This is the model ``twin compare`` holds against babeld in ``emu``, so it follows what babeld
does rather than what RFC 8966 allows (function names are babeld's, and so are the modules':
``neighbour``, ``message``, ``route``, ``resend``, ``local``, ``util``, and ``babeld`` for the
daemon's main loop, the twin itself):

* **Hellos and IHUs** (``message.c``): every interface sends a Hello every ``roughly(H)``
  (uniform in [0.75 H, 1.25 H)), a full IHU with every third Hello, a "marginal" IHU in between
  for neighbours whose link is not perfect.
* **Link cost** (``neighbour.c``, wireless interfaces, which is what ``emu`` configures): a 16-bit
  hello history ``reach``; a Hello shifts a 1 in, and a neighbour check notices a missed Hello
  once ``1.7 H`` have passed, then one more per ``H``. ``rxcost = 0x8000 * 256 / (sreach + 1)``
  with the two newest bits weighted, so the cost doubles with each missed Hello after the second;
  ``(reach & 0xFFF0) == 0`` is infinite and ``reach == 0`` flushes the neighbour. The link cost
  combines ``txcost`` (from the neighbour's IHU) and ``rxcost`` ETX-style. Neighbours are checked
  every ``roughly(1.5 H)``, not on every tick, which is part of why babeld reacts in steps.
* **Routes** (``route.c``): metric ``= refmetric + cost``; feasibility against the source's
  feasibility distance (newer seqno, or same seqno and smaller metric), which the node lowers
  whenever it advertises; route choice by the *smoothed* metric (half-life 4 s, advanced once
  per whole second with babeld's randomised rounding); a newly learnt route starts with a smoothed
  metric of at least ``INFINITY / 2``, so it replaces a working route only once that decays;
  switching needs both metric and smoothed metric to be better (hysteresis); routes expire after
  ``max(6 x update interval, 15 s)`` without an update. Unfeasible alternatives are stored and kept
  fresh too (babeld 1.12's dumps in ``emu`` list a route from every neighbour, feasible or not), so
  they are at hand, with a settled smoothed metric, once a new seqno makes them feasible.
* **Updates and requests**: a full update on every interface every ``roughly(U)``; triggered
  updates with babeld's urgency rules (``send_triggered_update``); on losing a route with no
  feasible alternative, a retraction and a seqno request, which hop-by-hop reaches the source,
  makes it raise its seqno and brings a feasible route back (``route_lost``,
  ``send_unfeasible_request``); satisfied requests are answered urgently along the way.
* **Crash**: the node goes silent. Neighbours see it only through missed Hellos, as babeld does
  in ``emu`` (a veth peer losing carrier does not make babeld drop the interface; taking down
  one's *own* interface does, and flushes its neighbours at once).

Why a hand-written event loop rather than SimPy processes per node: the runner advances routing
engines lazily, to the instant a probe, fault or loop tick looks at them (the same contract as the
compiled batman kernel), so the engine owns its clock. Its events are still plain timers and
messages; the data plane is :mod:`twin.sim.dataplane`'s next-hop walk over ``xs[dst, node, 0]``,
shared with the batman twin.

The twin starts babeld on every node at engine time 0 and lets it converge by ``emu``'s own rule
(every node routes to every node of its component, and no next hop changed for ``2 H + 0.5 s``, at
most ``max(5 s, 5 H)``) before the scenario's clock starts, so faults hit a mesh of the same age.
"""

from twin.sim.babel.babeld import BabelTwin

__all__ = ["BabelTwin"]
