"""Scenario files: the schema (pydantic), loading, and errors that point at file:line:field.

A scenario is shaped like a chaos experiment: what the mesh is (topology, routing), what is done
to it (traffic, faults, attacks), what the loop may do, and what must hold (targets). Every
field has a default, so ``name: x`` alone is a valid scenario.

Bad files get *every* problem at once, each with file, line, field path, the bad value, what is
allowed, and a "did you mean" for misspelt keys. :class:`ScenarioError` carries them; the CLI
prints them and exits 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twin import limits as L
from twin import safeyaml
from twin.scenario_errors import Problem, ScenarioError, line_map, problem_of
from twin.units import Bitrate, Duration, Rate

#: a reference to a node (a name in the topology, or most_central / busiest_relay / random)
NodeRef = Annotated[str, Field(pattern=L.NODE_PATTERN)]
Items = L.MAX_ITEMS


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LinkSpec(_M):
    """Default properties of every link (per packet, per direction)."""

    loss: float = Field(0.0, ge=0.0, le=1.0, description="packet loss probability 0..1")
    delay: Duration = Field(0.001, description="one-way delay")
    rate: Bitrate | None = Field(None, description="link rate; none = unlimited")


class LinkOverride(LinkSpec):
    between: tuple[NodeRef, NodeRef] = Field(description="the two node names of the link")


class LinkTypeSpec(_M):
    """How links of one meshviewer type (wifi, vpn, other, ...) are simulated; unset fields keep the
    importer's default for that type (see twin/meshviewer.py)."""

    loss: float | None = Field(None, ge=0.0, le=1.0, description="loss per frame; unset: from each link's TQ")
    delay: Duration | None = Field(None, description="one-way delay")
    retries: int | None = Field(None, ge=0, le=15, description="link-layer retries of a unicast data frame "
                                "(802.11 default 7 on wifi); OGMs are broadcasts and never retried")


class TopologySpec(_M):
    kind: Literal["line", "ring", "grid", "random_geometric", "graphml", "meshviewer"] = "random_geometric"
    nodes: int = Field(50, ge=2, le=L.MAX_NODES)
    radius: float | None = Field(None, gt=0.0, le=1.5, description="random_geometric radius (unit square)")
    avg_degree: float = Field(7.0, gt=1.0, le=L.MAX_NODES, description="used to derive radius when radius is not set")
    rows: int | None = Field(None, ge=1, le=L.MAX_NODES)
    cols: int | None = Field(None, ge=1, le=L.MAX_NODES)
    file: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\x00]*$",
                             description="graphml / meshviewer file, relative to the scenario file")
    include_offline: bool = False
    component: Literal["largest", "all"] = "largest"
    link: LinkSpec = Field(default_factory=LinkSpec)
    links: list[LinkOverride] = Field(default_factory=list, max_length=Items)
    link_types: dict[str, LinkTypeSpec] = Field(default_factory=dict, description="meshviewer: link model per "
                                                "link type, e.g. {vpn: {loss: 0.0, delay: 20ms}}")
    min_tq: float = Field(0.1, ge=0.0, le=1.0, description="meshviewer: drop links whose mean TQ is below this "
                          "(0.1 sits in a gap of the shipped snapshots' TQ distributions)")

    @model_validator(mode="after")
    def _file_needed(self) -> TopologySpec:
        if self.kind in ("graphml", "meshviewer") and not self.file:
            raise ValueError(f"topology kind {self.kind} needs 'file'")
        if self.kind == "grid" and (self.rows or self.cols):
            rows = self.rows or -(-self.nodes // self.cols)
            cols = self.cols or -(-self.nodes // rows)
            if rows * cols > L.MAX_NODES:
                raise ValueError(f"a grid of {rows} x {cols} has {rows * cols} nodes; at most {L.MAX_NODES} "
                                 "are allowed")
        return self

    def node_count(self) -> int | None:
        """Nodes the built topology will have (``None`` for imported files: known after reading)."""
        if self.kind in ("graphml", "meshviewer"):
            return None
        if self.kind == "grid":
            rows = self.rows or int(round(self.nodes ** 0.5))
            return rows * (self.cols or -(-self.nodes // rows))
        return self.nodes


class RoutingSpec(_M):
    """B.A.T.M.A.N. IV parameters (kernel defaults) or babel timers for emu."""

    protocol: Literal["batman_iv", "babel"] = "batman_iv"
    orig_interval: Duration = Field(1.0, ge=L.MIN_PERIOD_S, description="OGM period")
    jitter: Duration = Field(0.02, le=60.0, description="OGM jitter (+-)")
    hop_penalty: int = Field(30, ge=0, le=255)
    ttl: int = Field(50, ge=1, le=255)
    forward_jitter: Duration = Field(0.01, le=60.0, description="forward delay U[0, x)")
    aggregation: Duration = Field(0.0, le=60.0, description="extra forward hold U[0, x); the kernel holds up to "
                                  "100ms")
    purge_neighbour: Duration = Field(200.0, description="neighbour purge timeout")
    purge_originator: Duration = Field(400.0, description="originator purge timeout")
    hello_interval: Duration = Field(1.0, ge=L.MIN_PERIOD_S, description="babel hello interval")


class ProbeSpec(_M):
    kind: Literal["probe"] = "probe"
    pairs: int = Field(10, ge=1, le=L.MAX_PAIRS)
    rate: Rate = Field(10.0, description="probes per second per pair")
    select: Literal["random", "through", "through_all"] = Field(
        "random", description="through: pairs with a shortest path crossing `via`; through_all: pairs "
        "every shortest path of which crosses `via`, so any router must move them when it fails (use it "
        "to compare routing implementations that break ties between equal paths differently)")
    via: NodeRef = Field("most_central", description="node name or most_central (for select: through*)")
    start: Duration = Field(10.0, description="probes start here (warm-up)")
    size: int = Field(1000, ge=28, le=65535, description="probe size in bytes")


FaultKind = Literal["node_crash", "node_recover", "link_down", "link_up", "link_degrade", "partition",
                    "heal", "link_flap", "blackhole"]


class FaultSpec(_M):
    at: Duration
    kind: FaultKind
    node: NodeRef | None = Field(None, description="node name, most_central, busiest_relay (most central node "
                                 "whose loss does not split the mesh) or random")
    between: tuple[NodeRef, NodeRef] | None = Field(None, description="the two nodes of a link")
    groups: list[Annotated[list[NodeRef], Field(max_length=L.MAX_NODES)]] | None = Field(
        None, max_length=L.MAX_NODES, description="partition: node groups (others join group 0)")
    loss: float | None = Field(None, ge=0.0, le=1.0)
    rate: Bitrate | None = None
    duration: Duration | None = Field(None, description="repair after this long")
    period: Duration | None = Field(None, ge=2 * L.MIN_PERIOD_S, description="link_flap: full down+up period")

    @model_validator(mode="after")
    def _needs(self) -> FaultSpec:
        need_node = {"node_crash", "node_recover", "blackhole"}
        need_link = {"link_down", "link_up", "link_degrade", "link_flap"}
        if self.kind in need_node and not self.node:
            raise ValueError(f"{self.kind} needs 'node' (a node name, most_central or random)")
        if self.kind in need_link and not self.between:
            raise ValueError(f"{self.kind} needs 'between: [a, b]'")
        if self.kind == "partition" and not self.groups and not self.node:
            raise ValueError("partition needs 'groups' (lists of node names) or 'node' (cut around it)")
        if self.kind == "link_degrade" and self.loss is None and self.rate is None:
            raise ValueError("link_degrade needs 'loss' and/or 'rate'")
        return self


class AttackSpec(_M):
    """A control-plane attack: what an adversary on the mesh could send to a node agent."""

    at: Duration
    kind: Literal["forged_command", "replayed_command", "expired_command", "revoked_controller",
                  "tampered_telemetry"]
    node: NodeRef = Field("most_central", description="node the malicious command targets")


#: what the loop may do: the kinds of signed command Plan can issue (``twin.mapek.plan``)
ActionKind = Literal["set_orig_interval", "set_hop_penalty", "hardif_down", "hardif_up", "quarantine",
                     "steer_fallback", "unsteer_fallback"]


class ControlSpec(_M):
    """How the controller reaches the node agents: its telemetry polls and its commands.

    ``out_of_band``: a management network beside the mesh, with the given round-trip time and
    loss per message. ``in_band``: over the mesh itself, from the node the controller sits on
    (``controller``): a node with no route to it can neither report nor be commanded, and
    messages are lost as the mesh loses them and delayed per hop (``rtt`` and ``loss`` then do not
    apply).
    """

    path: Literal["out_of_band", "in_band"] = "out_of_band"
    poll: Duration = Field(1.0, ge=0.05, le=3600.0, description="telemetry poll period (every node reports once "
                           "per poll, signed, with its own age)")
    rtt: Duration = Field(0.01, le=10.0, description="out_of_band: round-trip time controller <-> node")
    loss: float = Field(0.0, ge=0.0, le=1.0, description="out_of_band: loss probability of each message")
    controller: str | None = Field(None, description="in_band: node the controller sits on (default: the "
                                   "best-connected node, most neighbours, first by name)")


LOOP_ACTIONS = ("set_orig_interval", "set_hop_penalty", "hardif_down", "hardif_up", "quarantine", "steer_fallback")


class LoopSpec(_M):
    enabled: bool = False
    period: Duration | None = Field(None, ge=L.MIN_PERIOD_S, description="time between loop iterations "
                                    "(default: one per telemetry poll, control.poll)")
    warmup: Duration = Field(30.0, description="the loop learns but does not diagnose before this time (emu "
                             "timelines start on a converged mesh, so a few seconds suffice there)")
    detector: Literal["rules"] = Field(
        "rules", description="rules: diagnosis by loss-adjusted silence and probe-path rules (the anomaly forest "
        "is trained and judged offline, `twin train detector`; it decides nothing in the loop)")
    knowledge: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\x00]*$",
                                  description="incident file kept across runs (JSON, relative to the scenario): "
                                  "past incidents are loaded at start and this run's are added at the end")
    actions: list[ActionKind] = Field(default_factory=lambda: list(LOOP_ACTIONS))
    budget: int = Field(6, ge=1, le=1000, description="commands per node per minute the loop may send (restores "
                        "are exempt); more are refused and logged")
    confirm: int = Field(2, ge=1, le=20, description="consecutive polls a diagnosis must persist before the loop "
                         "acts on it")
    sign: bool = Field(True, description="sign every action (ML-DSA-65) and verify before applying")

    @field_validator("detector", mode="before")
    @classmethod
    def _no_forest(cls, v: Any) -> Any:
        if v == "isolation_forest":
            raise ValueError("'isolation_forest' no longer runs in the loop: its scores decided nothing (they "
                             "were only logged); train and judge it offline with `twin train detector` and "
                             "bench/ml_twin.py. Allowed: 'rules'")
        return v

    charge_costs: bool = Field(True, description="delay decisions by the measured wall-clock cost of each loop "
                               "phase and signature; false makes loop runs byte-reproducible (costs still recorded)")


class EmuSpec(_M):
    """How ``emu`` builds the mesh (ignored by ``sim``)."""

    nodes: Literal["auto", "uml", "netns"] = Field(
        "auto", description="auto: batman_iv on UML kernels when the host kernel lacks batman-adv, else "
        "namespaces; uml: real batman-adv kernels in User-Mode Linux nodes; netns: Mininet namespaces")
    link_model: Literal["radio", "p2p"] = Field(
        "radio", description="UML nodes: radio = one mesh interface per node on a shared medium; p2p = one "
        "interface per link")
    boot_wave: int = Field(6, ge=1, le=64, description="UML nodes booted at once (a 2-core host saturates "
                           "when 50 boot together)")


class MttrTarget(_M):
    max: Duration | None = None
    p95: Duration | None = None
    median: Duration | None = None
    hold: Duration = Field(1.0, description="pairs must deliver continuously this long")

    @model_validator(mode="after")
    def _some_stat(self) -> MttrTarget:
        if self.max is None and self.p95 is None and self.median is None:
            raise ValueError("an mttr target needs a limit: max, p95 and/or median (e.g. max: 20s)")
        return self


class DeliveryTarget(_M):
    min: float = Field(0.99, ge=0.0, le=1.0)
    after: str = Field("converged",
                       description="converged (default), start, heal (after the last repair), or a time like 60s")

    @field_validator("after")
    @classmethod
    def _after(cls, v: str) -> str:
        if v not in ("converged", "start", "heal"):
            from twin.units import parse_duration

            try:
                parse_duration(v)
            except ValueError as err:
                raise ValueError(f"after must be converged, start, heal or a time like 60s (got {v!r})") from err
        return v


class ConvergenceTarget(_M):
    max: Duration = 60.0


class LatencyTarget(_M):
    p99: Duration | None = None
    p50: Duration | None = None

    @model_validator(mode="after")
    def _some_stat(self) -> LatencyTarget:
        if self.p99 is None and self.p50 is None:
            raise ValueError("a loop_latency target needs a limit: p99 and/or p50 (e.g. p99: 5ms)")
        return self


class OverheadTarget(_M):
    max: Bitrate = Field(description="bound on the mean control traffic per node: routing frames (OGMs, "
                         "hellos) plus the loop's telemetry and commands, e.g. 20kbit/s")


class TargetsSpec(_M):
    mttr: MttrTarget | None = None
    control_overhead: OverheadTarget | None = None
    delivery_ratio: DeliveryTarget | None = None
    convergence: ConvergenceTarget | None = None
    loop_latency: LatencyTarget | None = None


class CiSpec(_M):
    """Marks a scenario for ``twin check``: run it over this many seeds and compare with its baseline."""

    seeds: int = Field(30, ge=5, le=1000, description="seeds per check (from the scenario's seed on); at least 5 "
                       "so a bootstrap interval means something")


class Scenario(_M):
    name: str = Field("scenario", pattern=L.NAME_PATTERN,
                      description="names the run folder: letters, digits, '.', '_' and '-', at most 64")
    description: str = Field("", max_length=L.MAX_TEXT)
    seed: int = Field(1, ge=0, le=L.MAX_SEED)
    duration: Duration = Field(120.0, gt=0.0)
    mode: Literal["sim", "emu", "live"] = "sim"
    topology: TopologySpec = Field(default_factory=TopologySpec)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    traffic: list[ProbeSpec] = Field(default_factory=lambda: [ProbeSpec()], max_length=100)
    faults: list[FaultSpec] = Field(default_factory=list, max_length=Items)
    attacks: list[AttackSpec] = Field(default_factory=list, max_length=Items)
    loop: LoopSpec = Field(default_factory=LoopSpec)
    control: ControlSpec = Field(default_factory=ControlSpec)
    emu: EmuSpec = Field(default_factory=EmuSpec)
    targets: TargetsSpec = Field(default_factory=TargetsSpec)
    ci: CiSpec | None = Field(None, description="run by `twin check` against results/baselines/")

    @field_validator("loop", mode="before")
    @classmethod
    def _loop_switch(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return {"enabled": v}
        if isinstance(v, str) and v.lower() in ("on", "off"):
            return {"enabled": v.lower() == "on"}
        return v

    # where the file lives (relative topology files) and the line of every field (error messages);
    # not part of the schema
    _source: Path | None = None
    _lines: dict | None = None

    @property
    def source(self) -> Path | None:
        return self._source

    def updated(self, **fields: Any) -> Scenario:
        """A copy with ``fields`` replaced (not re-validated: callers pass checked values), still
        knowing its file and lines, so a later error about the copy names the same file:line."""
        copy = self.model_copy(update=fields)
        copy._source, copy._lines = self._source, self._lines
        return copy

    def line_of(self, path: str) -> int | None:
        """Line of a field path like ``faults[2].node`` in the file it came from (or its parent's)."""
        if not self._lines:
            return None
        parts: list = []
        for tok in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            parts.append(int(tok[1:-1]) if tok.startswith("[") else tok)
        for k in range(len(parts), -1, -1):
            if tuple(parts[:k]) in self._lines:
                return self._lines[tuple(parts[:k])]
        return None


def parse(text: str, fname: str = "<string>") -> Scenario:
    """Validate scenario YAML text; raises :class:`ScenarioError` listing every problem."""
    try:
        data, node = safeyaml.load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ScenarioError([Problem(fname, mark.line + 1 if mark else None, "",
                                     f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    except safeyaml.YamlLimitError as err:
        raise ScenarioError([Problem(fname, err.line, err.path, f"refused: {err}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError([Problem(fname, 1, "", "a scenario is a mapping of fields (name:, topology:, ...)")])
    lines = line_map(node) if node is not None else {}
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as err:
        problems = [problem_of(e, fname, lines, Scenario) for e in err.errors()]
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise ScenarioError(problems) from None
    sc._lines = lines
    from twin.scenario_bounds import cross_check  # needs Scenario: imported here, not at the top

    problems = cross_check(sc, fname)
    if problems:
        raise ScenarioError(problems)
    return sc


def load(path: str | Path) -> Scenario:
    """Load and validate one scenario file (at most :data:`twin.limits.MAX_FILE_BYTES`, UTF-8)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(L.MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ScenarioError([Problem(str(p), None, "", f"cannot read file: {err.strerror}")]) from err
    if len(raw) > L.MAX_FILE_BYTES:
        raise ScenarioError([Problem(str(p), None, "", f"refused: the file is larger than {L.MAX_FILE_BYTES} "
                                     "bytes (a scenario is a few kB)")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ScenarioError([Problem(str(p), line, "", "not UTF-8 text (a scenario is a YAML text file)")]) from None
    sc = parse(text, str(p))
    if "name" not in sc.model_fields_set:
        sc.name = _safe_name(p.stem)
    sc._source = p.resolve()
    return sc


def _safe_name(stem: str) -> str:
    """A file's stem made into a scenario name (the run folder's name): the name alphabet only."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:64]
    return name or "scenario"


def json_schema() -> dict:
    """JSON Schema for editors (yaml-language-server, VS Code)."""
    schema = Scenario.model_json_schema()
    schema["title"] = "meshtwin scenario"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
