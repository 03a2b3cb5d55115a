"""The lab inventory: which nodes exist, how to reach them, who they are, and what the controller
may do to each. Validated like a scenario file: every problem at once, each with file, line and
field path (``nodes[2].allow_actions[0]``), and what is allowed.

Paths in the file (identities, trust bundle, SSH keys) are relative to the inventory's folder.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twin.errors import TwinError
from twin.units import Duration

#: what an agent can do to its own kernel (a subset of twin.adapter.ACTION_KINDS)
AGENT_ACTIONS = ("set_orig_interval", "set_hop_penalty", "hardif_down", "hardif_up")
#: faults an agent can inject on its own node when inventory and scenario both allow it
AGENT_FAULTS = ("node_crash", "node_recover", "link_down", "link_up")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SshSpec(_M):
    host: str | None = Field(None, description="default: the node's mgmt address")
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key: str | None = Field(None, description="private key file; default: the SSH agent / ~/.ssh")
    known_hosts: str | None = Field(None, description="known_hosts file; 'none' disables host key checks (labs "
                                    "only)")


class NodeSpec(_M):
    name: str = Field(..., pattern=r"^[A-Za-z0-9._-]{1,63}$")
    mgmt: str = Field(..., description="management-network address of the agent (out-of-band)")
    inband: str | None = Field(None, description="the node's address on bat0 (in-band channel)")
    port: int | None = Field(None, ge=1, le=65535, description="agent port (default: channel.port)")
    mesh_if: str = "bat0"
    hardifs: list[str] = Field(default_factory=lambda: ["eth1"], min_length=1)
    allow_actions: list[str] = Field(default_factory=lambda: list(AGENT_ACTIONS))
    allow_faults: list[str] = Field(default_factory=list, description="fault kinds the scenario may inject "
                                    "here (none by default)")
    ssh: SshSpec = Field(default_factory=SshSpec)

    @field_validator("mgmt", "inband")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.ip_address(v)
        return v

    @field_validator("allow_actions")
    @classmethod
    def _actions(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in AGENT_ACTIONS]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an agent action; allowed: {', '.join(AGENT_ACTIONS)}")
        return v

    @field_validator("allow_faults")
    @classmethod
    def _faults(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in AGENT_FAULTS]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a live fault kind; allowed: {', '.join(AGENT_FAULTS)}")
        return v


class ChannelSpec(_M):
    transport: Literal["oob", "inband"] = Field("oob", description="oob: agents' mgmt addresses (a lab "
                                                "management network); inband: their bat0 addresses")
    port: int = Field(7443, ge=1, le=65535)
    connect_timeout: Duration = Field(2.0, gt=0)
    poll_timeout: Duration = Field(0.5, gt=0, description="a node not answering within this is 'not reporting' "
                                   "for that poll; the loop never waits longer")
    reconnect_backoff: Duration = Field(1.0, gt=0)
    converge_timeout: Duration = Field(60.0, ge=0, description="before the timeline starts, wait this long at "
                                       "most for every node to report a route to every other")


class SafetySpec(_M):
    rate_per_node: float = Field(6.0, gt=0, description="actions per minute per node (controller and agent)")
    rate_fleet: float = Field(30.0, gt=0, description="actions per minute over the whole lab")
    max_changed_fraction: float = Field(0.25, gt=0, le=1.0, description="at most this fraction of nodes may "
                                        "have unconfirmed changes at once")
    confirm_within: Duration = Field(15.0, gt=0, description="an action reverts on its node unless confirmed "
                                     "within this")
    health_check_after: Duration = Field(3.0, gt=0, description="the controller checks the node's health this "
                                         "long after an action, then confirms or reverts it")


class ControllerSpec(_M):
    identity: str = Field(..., description="controller identity file (twin live keys)")
    trust_bundle: str = Field(..., description="trust bundle file: the mesh CA, revocations")
    state_dir: str = Field("live-state", description="where a running live run keeps its status file")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus endpoint of the controller")


class Inventory(_M):
    mesh: str = Field(..., pattern=r"^[a-z0-9._-]{1,255}$", description="SPIFFE trust domain of the lab")
    controller: ControllerSpec
    channel: ChannelSpec = Field(default_factory=ChannelSpec)
    safety: SafetySpec = Field(default_factory=SafetySpec)
    nodes: list[NodeSpec] = Field(..., min_length=1)

    _dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique(self) -> Inventory:
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"node name {n.name!r} appears twice")
            seen.add(n.name)
        if self.channel.transport == "inband":
            missing = [n.name for n in self.nodes if n.inband is None]
            if missing:
                raise ValueError(f"channel.transport is inband but nodes {', '.join(missing)} have no inband address")
        return self

    # -- helpers ---------------------------------------------------------------------------
    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self._dir / q

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def address(self, n: NodeSpec) -> tuple[str, int]:
        host = n.inband if self.channel.transport == "inband" else n.mgmt
        return str(host), n.port or self.channel.port

    def spiffe(self, n: NodeSpec) -> str:
        return f"spiffe://{self.mesh}/node/{n.name}"


class InventoryError(TwinError):
    exit_code = 2


def parse(text: str, fname: str = "<inventory>", base: Path | None = None) -> Inventory:
    """Validate inventory YAML; raises :class:`InventoryError` listing every problem."""
    from twin.scenario_errors import Problem, _fmt_path
    from twin.scenario_errors import line_map as _lines

    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InventoryError(f"{fname}:{mark.line + 1 if mark else '?'}: not valid YAML: "
                             f"{getattr(err, 'problem', err)}") from err
    if not isinstance(data, dict):
        raise InventoryError(f"{fname}:1: an inventory is a mapping (mesh:, controller:, nodes:)")
    lines = _lines(node) if node is not None else {}
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as err:
        probs = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if isinstance(p, int) or not any(ch in str(p) for ch in "[]()"))
            line = next((lines[loc[:k]] for k in range(len(loc), -1, -1) if loc[:k] in lines), None)
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown field '{loc[-1]}'"
            elif e["type"] == "missing":
                msg = "required field is missing"
            probs.append(str(Problem(fname, line, _fmt_path(loc), msg)))
        raise InventoryError("\n".join(probs)) from None
    inv._dir = base if base is not None else Path(".")
    return inv


def load(path: str | Path) -> Inventory:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise InventoryError(f"{p}: cannot read inventory: {err.strerror}") from err
    return parse(text, str(p), p.resolve().parent)
