"""Scenario files: units, defaults, and errors that name file, line, field, bad value and what is allowed.

The bad inputs are a library of named fixtures (the Chaos Toolkit habit of ``MissingTitleExperiment``):
each one is a small YAML file with the exact problems it must produce. Every problem of a file must
be reported at once, never only the first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import scenario_text, write_scenario
from typer.testing import CliRunner

from twin.scenario import Problem, RoutingSpec, Scenario, ScenarioError, json_schema, load, parse
from twin.units import parse_bitrate, parse_duration, parse_rate
from twin.world import resolve

# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("2s", 2.0), ("1.5min", 90.0), ("1h", 3600.0), ("250us", 250e-6), (" 3 s ", 3.0),
    ("2m", 120.0), (7, 7.0), (0.25, 0.25),
])
def test_duration_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "per_s"), [("10/s", 10.0), ("30/min", 0.5), ("1/ms", 1000.0), (4, 4.0)])
def test_rate_units(text, per_s):
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize(("text", "bps"), [("5Mbit", 5e6), ("100kbit", 1e5), ("1Gbit", 1e9), ("5mbps", 5e6),
                                           ("5Mbit/s", 5e6), (1200, 1200.0)])
def test_bitrate_units(text, bps):
    assert parse_bitrate(text) == pytest.approx(bps)


@pytest.mark.parametrize(("parser", "bad", "hint"), [
    (parse_duration, "2 parsecs", "500ms"), (parse_duration, "fast", "500ms"), (parse_duration, "10", "500ms"),
    (parse_duration, -1, "negative"), (parse_duration, True, "boolean"),
    (parse_rate, "10/fortnight", "10/s"), (parse_rate, "10", "10/s"), (parse_rate, 0, "positive"),
    (parse_rate, False, "boolean"),
    (parse_bitrate, "5 furlongs", "5Mbit"), (parse_bitrate, "Mbit", "5Mbit"), (parse_bitrate, -3, "positive"),
])
def test_bad_units_name_the_value_and_the_allowed_forms(parser, bad, hint):
    with pytest.raises(ValueError) as err:
        parser(bad)
    assert hint in str(err.value)
    if isinstance(bad, str):
        assert repr(bad) in str(err.value)


def test_units_inside_a_scenario():
    sc = parse(scenario_text("""
        duration: 1.5min
        topology: {kind: line, nodes: 4, link: {delay: 2ms, rate: 5Mbit}}
        routing: {orig_interval: 500ms}
        traffic: [{rate: 30/min}]
    """))
    assert sc.duration == 90.0
    assert sc.topology.link.delay == pytest.approx(0.002)
    assert sc.topology.link.rate == 5e6
    assert sc.routing.orig_interval == 0.5
    assert sc.traffic[0].rate == 0.5


# --------------------------------------------------------------------------- defaults


def test_name_alone_is_a_valid_scenario_with_kernel_defaults():
    sc = parse("name: x")
    assert sc.name == "x" and sc.mode == "sim" and sc.duration > 0
    r = sc.routing
    assert (r.protocol, r.orig_interval, r.jitter, r.hop_penalty, r.ttl) == ("batman_iv", 1.0, 0.02, 30, 50)
    assert (r.purge_neighbour, r.purge_originator) == (200.0, 400.0)
    assert sc.topology.kind == "random_geometric" and sc.topology.nodes >= 2
    assert sc.traffic and sc.traffic[0].pairs >= 1
    assert sc.faults == []
    assert RoutingSpec() == r
    assert parse("").model_dump() == Scenario().model_dump()


def test_defaults_resolve_to_a_world():
    world = resolve(parse("name: x"))
    assert world.graph.number_of_nodes() == 50
    assert world.flows and len(world.flows[0].pairs) == 10
    assert world.ops == []


def test_load_names_the_scenario_after_its_file(tmp_path):
    sc = load(write_scenario(tmp_path, "seed: 3\n", name="my-experiment.yaml"))
    assert sc.name == "my-experiment" and sc.seed == 3
    assert sc.source == (tmp_path / "my-experiment.yaml").resolve()


def test_unreadable_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "cannot read" in str(err.value)


# --------------------------------------------------------------------------- the library of bad inputs


@dataclass(frozen=True)
class Expect:
    """One problem a bad input must produce: where, and words the message must contain."""

    path: str
    line: int
    says: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadInput:
    text: str
    problems: tuple[Expect, ...]


MissingNodeFault = BadInput("""\
name: crash-without-node
faults:
  - {at: 10s, kind: node_crash}
""", (Expect("faults[0]", 3, ("node_crash", "'node'", "most_central")),))

MisspeltKey = BadInput("""\
name: typo
topology:
  kind: grid
  rowz: 3
""", (Expect("topology.rowz", 4, ("'rowz'", "did you mean 'rows'", "Allowed:", "cols")),))

MisspeltTopLevelKey = BadInput("""\
durration: 10s
""", (Expect("durration", 1, ("'durration'", "did you mean 'duration'", "topology", "faults")),))

MisspeltTarget = BadInput("""\
targets:
  mttr: {p99: 3s}
""", (Expect("targets.mttr.p99", 2, ("'p99'", "did you mean 'p95'", "median")),))

BadUnit = BadInput("""\
name: bad-unit
duration: 2 parsecs
""", (Expect("duration", 2, ("'2 parsecs'", "500ms", "min")),))

BadRate = BadInput("""\
traffic:
  - kind: probe
    rate: 10/fortnight
""", (Expect("traffic[0].rate", 3, ("'10/fortnight'", "10/s")),))

BadBitrate = BadInput("""\
topology:
  link:
    rate: 5 furlongs
""", (Expect("topology.link.rate", 3, ("'5 furlongs'", "5Mbit")),))

LossOutOfRange = BadInput("""\
name: too-lossy
topology: {kind: line, nodes: 3}
faults:
  - at: 5s
    kind: link_degrade
    between: [n0, n1]
    loss: 1.5
""", (Expect("faults[0].loss", 7, ("1.5", "less than or equal to 1")),))

NegativeLinkLoss = BadInput("""\
topology:
  link: {loss: -0.1}
""", (Expect("topology.link.loss", 2, ("-0.1", "greater than or equal to 0")),))

UnknownTopologyKind = BadInput("""\
topology:
  kind: hexagon
""", (Expect("topology.kind", 2, ("'hexagon'", "'random_geometric'", "'grid'", "'meshviewer'")),))

UnknownFaultKind = BadInput("""\
faults:
  - {at: 1s, kind: meteor_strike, node: n1}
""", (Expect("faults[0].kind", 2, ("'meteor_strike'", "'node_crash'", "'link_flap'", "'blackhole'")),))

UnknownMode = BadInput("""\
mode: production
""", (Expect("mode", 1, ("'production'", "'sim'", "'emu'", "'live'")),))

MissingFaultTime = BadInput("""\
faults:
  - kind: node_crash
    node: n1
""", (Expect("faults[0].at", 2, ("missing",)),))

WrongType = BadInput("""\
seed: seven
""", (Expect("seed", 1, ("'seven'", "integer")),))

MeshviewerWithoutFile = BadInput("""\
topology:
  kind: meshviewer
""", (Expect("topology", 1, ("meshviewer", "'file'")),))

NotAMapping = BadInput("""\
- name: x
- seed: 3
""", (Expect("", 1, ("mapping",)),))

InvalidYaml = BadInput("""\
name: x
topology: {kind: line
seed: 3
""", (Expect("", 3, ("not valid YAML",)),))

Everything = BadInput("""\
name: everything-wrong
durration: 2 parsecs
topology:
  kind: hexagon
  nodez: 5
routing: {orig_intervall: 1s, hop_penalty: 300}
traffic:
  - {kind: probe, rate: fast, pairs: 0}
faults:
  - {at: 10s, kind: link_degrade, between: [n1, n2], loss: 1.5}
  - {at: 20s, kind: node_crash}
  - {at: soon, kind: heal}
""", (
    Expect("durration", 2, ("did you mean 'duration'",)),
    Expect("topology.kind", 4, ("'hexagon'", "'line'")),
    Expect("topology.nodez", 5, ("did you mean 'nodes'",)),
    Expect("routing.orig_intervall", 6, ("did you mean 'orig_interval'",)),
    Expect("routing.hop_penalty", 6, ("300", "less than or equal to 255")),
    Expect("traffic[0].pairs", 8, ("0", "greater than or equal to 1")),
    Expect("traffic[0].rate", 8, ("'fast'", "10/s")),
    Expect("faults[0].loss", 10, ("1.5", "less than or equal to 1")),
    Expect("faults[1]", 11, ("'node'",)),
    Expect("faults[2].at", 12, ("'soon'", "500ms")),
))

BAD_INPUTS = {name: value for name, value in globals().items() if isinstance(value, BadInput)}


@pytest.fixture(params=sorted(BAD_INPUTS))
def bad_input(request) -> tuple[str, BadInput]:
    return request.param, BAD_INPUTS[request.param]


def _problems(text: str, fname: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as err:
        parse(text, fname)
    problems = err.value.problems
    assert str(err.value) == "\n".join(str(p) for p in problems)
    return problems


def test_bad_input_reports_every_problem_located(bad_input):
    name, bad = bad_input
    fname = f"{name}.yaml"
    problems = _problems(bad.text, fname)
    got = {(p.path, p.line) for p in problems}
    want = {(e.path, e.line) for e in bad.problems}
    assert got == want, f"{name}: expected problems at {sorted(want)}, got {[str(p) for p in problems]}"
    for e in bad.problems:
        p = next(p for p in problems if (p.path, p.line) == (e.path, e.line))
        assert p.file == fname
        for word in e.says:
            assert word in p.message, f"{name}: {e.path}: {word!r} missing from {p.message!r}"
        shown = str(p)
        assert shown.startswith(f"{fname}:{e.line}: "), shown
        assert (e.path or "<top>") in shown


def test_problems_come_in_file_order():
    problems = _problems(Everything.text, "e.yaml")
    lines = [p.line for p in problems]
    assert lines == sorted(lines)
    assert len(problems) == len(Everything.problems) >= 10


def test_load_reports_the_real_file_name(tmp_path):
    path = write_scenario(tmp_path, MisspeltKey.text, name="typo.yaml")
    with pytest.raises(ScenarioError) as err:
        load(path)
    (p,) = err.value.problems
    assert p.file == str(path) and p.line == 4 and p.path == "topology.rowz"


# --------------------------------------------------------------------------- world-level errors

MissingNodeInMesh = """\
name: ghost-node
duration: 60s
topology: {kind: line, nodes: 5}
faults:
  - {at: 10s, kind: node_crash, node: n99}
  - {at: 20s, kind: link_down, between: [n0, n2]}
  - {at: 90s, kind: node_crash, node: n1}
traffic:
  - {kind: probe, select: through, via: n42}
"""

LinkOverrideNotInTopology = """\
name: ghost-link
topology:
  kind: line
  nodes: 4
  links:
    - {between: [n0, n3], loss: 0.1}
faults:
  - {at: 10s, kind: node_crash, node: n77}
"""


def _world_problems(path):
    with pytest.raises(ScenarioError) as err:
        resolve(load(path))
    return err.value.problems


def test_world_errors_name_file_and_field(tmp_path):
    path = write_scenario(tmp_path, MissingNodeInMesh, name="ghost.yaml")
    problems = _world_problems(path)
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {"faults[0].node", "faults[1].between", "faults[2].at", "traffic[0].via"}
    assert all(p.file == str(path) for p in problems)
    assert "'n99'" in by_path["faults[0].node"].message
    assert "n0-n2" in by_path["faults[1].between"].message
    assert "90s" in by_path["faults[2].at"].message and "60s" in by_path["faults[2].at"].message
    assert "'n42'" in by_path["traffic[0].via"].message


def test_world_errors_carry_the_line(tmp_path):
    """twin.world promises errors "like schema errors: with the file, the line and the field path"."""
    path = write_scenario(tmp_path, MissingNodeInMesh, name="ghost.yaml")
    lines = {p.path: p.line for p in _world_problems(path)}
    assert lines == {"faults[0].node": 5, "faults[1].between": 6, "faults[2].at": 7, "traffic[0].via": 9}


def test_an_updated_copy_keeps_its_file_and_lines(tmp_path):
    """--seed, --duration, --loop and twin compare run copies of the loaded scenario: a world error in
    a copy must still name the file and line, and the original must not change."""
    path = write_scenario(tmp_path, MissingNodeInMesh, name="ghost.yaml")
    sc = load(path)
    copy = sc.updated(seed=sc.seed + 1, loop=sc.loop.model_copy(update={"enabled": True}))
    assert (copy.seed, copy.loop.enabled) == (sc.seed + 1, True) and not sc.loop.enabled
    assert copy.source == sc.source == path.resolve()
    with pytest.raises(ScenarioError) as err:
        resolve(copy)
    lines = {p.path: (p.file, p.line) for p in err.value.problems}
    assert lines["faults[0].node"] == (str(path), 5) and lines["traffic[0].via"] == (str(path), 9)


def test_world_errors_are_all_reported_at_once(tmp_path):
    """A bad link override must not hide a fault naming a node that is not in the mesh."""
    path = write_scenario(tmp_path, LinkOverrideNotInTopology, name="ghost-link.yaml")
    paths = {p.path for p in _world_problems(path)}
    assert paths == {"topology.links[0].between", "faults[0].node"}


# --------------------------------------------------------------------------- JSON Schema


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _check_schema(schema: dict) -> None:
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    props = schema["properties"]
    for key in ("name", "seed", "duration", "mode", "topology", "routing", "traffic", "faults", "loop", "targets"):
        assert key in props, key
    assert schema.get("additionalProperties") is False  # editors flag misspelt keys
    defs = schema["$defs"]
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/") and ref.split("/")[-1] in defs, ref
    fault = defs["FaultSpec"]
    assert set(fault["required"]) >= {"at", "kind"}
    kinds = fault["properties"]["kind"]["enum"]
    assert {"node_crash", "link_degrade", "partition", "link_flap", "blackhole"} <= set(kinds)
    assert "random_geometric" in defs["TopologySpec"]["properties"]["kind"]["enum"]
    duration = props["duration"]
    assert "string" in duration["type"] and "number" in duration["type"]
    assert "500ms" in duration["description"]
    loss = defs["LinkSpec"]["properties"]["loss"]
    assert (loss["minimum"], loss["maximum"]) == (0.0, 1.0)


def test_json_schema_shape():
    _check_schema(json_schema())


def test_schema_command_prints_valid_json(tmp_path):
    from twin.cli import app

    res = CliRunner().invoke(app, ["schema"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    _check_schema(schema)
    out = tmp_path / "scenario.schema.json"
    res = CliRunner().invoke(app, ["schema", "--output", str(out)])
    assert res.exit_code == 0
    assert json.loads(out.read_text()) == schema
