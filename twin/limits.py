"""Every upper bound on scenario input, in one table (scikit-learn's "constraints as data").

Each number is finite and documented (``docs/limits.md`` lists them) and is checked when a file is
validated, before a graph, a probe list or a run exists, so a typo such as ``rate: 1e30`` or a
``grid`` of 100000 x 100000 is a located error (exit 2), not a hang or 15 GB of memory.
"""

from __future__ import annotations

DAY_S = 86_400.0

#: any duration (run length, fault time, timers): 30 days
MAX_DURATION_S = 30 * DAY_S
#: any event rate (probes per second per pair)
MAX_RATE_HZ = 1_000.0
#: any link or fault bit rate: 1 Tbit/s
MAX_BITRATE_BPS = 1e12
#: nodes in a built topology (line, ring, grid, random_geometric); imports are checked after reading
MAX_NODES = 5_000
#: expected mean degree of a random geometric mesh (its edges grow with n x degree)
MAX_MEAN_DEGREE = 200.0
#: a random geometric mesh must expect at least this x ln(n) neighbours per node, or almost no seed
#: gives a connected graph and the seed search (up to 10,000 graphs) runs for minutes
MIN_DEGREE_PER_LN_N = 0.8
#: probe pairs of one traffic entry (also at most nodes x (nodes - 1) for built topologies)
MAX_PAIRS = 1_000_000
#: probes in one run, summed over traffic entries: pairs x rate x probing time
MAX_PROBES = 20_000_000
#: fault operations one link_flap may expand to (its active time / half its period)
MAX_FLAP_OPS = 1_000_000
#: shortest period of timers the twin steps through (OGM and hello intervals, loop period, flaps)
MIN_PERIOD_S = 0.01
#: entries in a list (faults, attacks, traffic, link overrides, partition groups)
MAX_ITEMS = 10_000
#: seeds are unsigned 32-bit integers (NumPy's SeedSequence takes them whole)
MAX_SEED = 2**32 - 1

#: scenario files: size, YAML nesting depth, and nodes after expanding aliases (billion laughs)
MAX_FILE_BYTES = 1_000_000
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 200_000
#: a topology file (graphml, meshviewer graph.json / nodes.json)
MAX_TOPOLOGY_FILE_BYTES = 200_000_000

#: scenario names become folder names: a safe file-name alphabet
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: node names in references (node:, between:, groups:, via:): printable, no control characters
NODE_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
MAX_TEXT = 10_000
