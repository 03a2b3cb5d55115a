"""What healing costs on the air: routing frames plus the loop's own telemetry and commands.

Byte sizes are those of the real messages: a B.A.T.M.A.N. IV OGM is a 24-byte
``batadv_ogm_packet`` in a 14-byte Ethernet header (no TVLVs counted); a babeld hello/IHU
packet is taken as 4 + 8 + 16 bytes of Babel in UDP/IPv6 (48 bytes of headers). A node's
telemetry report is its originator table (12 bytes an entry: MAC, next hop index, TQ, age) and
neighbour table (16 bytes an entry, with the overheard-forward counter) plus counters, inside
an ML-DSA-65 envelope (its measured overhead, :func:`twin.pqc.sizes`); a poll request is one
small frame; a command is a signed action envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OGM_FRAME_BYTES = 24 + 14
BABEL_FRAME_BYTES = 28 + 48
POLL_REQUEST_BYTES = 96
REPORT_HEADER_BYTES = 64
ORIG_ENTRY_BYTES = 12
NEIGHBOUR_ENTRY_BYTES = 16
MTU = 1500


def frames(size: int) -> int:
    return max(1, -(-int(size) // MTU))


def report_bytes(originators: int, neighbours: int, envelope_overhead: int) -> int:
    """Bytes of one signed telemetry report of a node knowing this many originators and neighbours."""
    return REPORT_HEADER_BYTES + ORIG_ENTRY_BYTES * originators + NEIGHBOUR_ENTRY_BYTES * neighbours + (
        envelope_overhead)


@dataclass
class OverheadMeter:
    """Bytes and frames the control traffic put on the air, summed over the run."""

    nodes: int
    routing_frames: int = 0
    routing_bytes: int = 0
    telemetry_bytes: int = 0
    telemetry_frames: int = 0
    command_bytes: int = 0
    command_frames: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, routing+loop bytes so far)

    def summary(self, duration_s: float, routing_frames: int, routing_frame_bytes: int) -> dict:
        """Per node and second over the run; ``peak`` is the busiest 10 s window."""
        self.routing_frames = routing_frames
        self.routing_bytes = routing_frames * routing_frame_bytes
        per = max(1, self.nodes) * max(duration_s, 1e-9)
        total = self.routing_bytes + self.telemetry_bytes + self.command_bytes
        peak = None
        s = self.samples
        if len(s) > 1:
            rates = []
            j = 0
            for i in range(len(s)):
                while s[i][0] - s[j][0] > 10.0:
                    j += 1
                if s[i][0] - s[j][0] >= 5.0:
                    rates.append((s[i][1] - s[j][1]) / (s[i][0] - s[j][0]))
            peak = round(max(rates) * 8 / max(1, self.nodes), 1) if rates else None
        return {
            "routing_frames_per_node_s": round(self.routing_frames / per, 3),
            "routing_bytes_per_node_s": round(self.routing_bytes / per, 1),
            "telemetry_bytes_per_node_s": round(self.telemetry_bytes / per, 1),
            "command_bytes_per_node_s": round(self.command_bytes / per, 3),
            "total_bit_per_node_s": round(total * 8 / per, 1),
            "peak_10s_bit_per_node_s": peak,
        }
