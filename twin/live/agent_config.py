"""The node agent's configuration file (``/etc/meshtwin/agent.yaml``, written by ``twin live keys``).

Relative paths are relative to the file's folder. ``kernel: static`` is the stand-in kernel of
channel tests and benchmarks; on a lab node it is always ``batadv``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.errors import TwinError
from twin.live.inventory import AGENT_ACTIONS


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(..., description="this node's name (its identity is spiffe://<mesh>/node/<node>)")
    identity: str = Field(..., description="this node's identity file")
    trust_bundle: str = Field(..., description="mesh CA, controller identities, revocations")
    controllers: list[str] = Field(..., min_length=1, description="SPIFFE ids allowed to connect and command")
    listen: str = "0.0.0.0"
    port: int = Field(7443, ge=0, le=65535)
    mesh_if: str = "bat0"
    hardifs: list[str] = Field(default_factory=lambda: ["eth1"])
    allow_actions: list[str] = Field(default_factory=lambda: list(AGENT_ACTIONS))
    allow_faults: list[str] = Field(default_factory=list)
    rate_per_min: float = Field(6.0, gt=0)
    max_confirm_s: float = Field(120.0, gt=0, description="longest confirm deadline a controller may ask for")
    audit_log: str = "/var/lib/meshtwin/audit.jsonl"
    metrics_port: int | None = Field(None, ge=0, le=65535)
    probe_host: str = Field("::", description="address the prober listens on (echoes and its own probes)")
    probe_port: int = Field(7798, ge=0, le=65535)
    yggdrasil_socket: str | None = Field("/var/run/yggdrasil.sock", description="admin socket of the fallback "
                                         "overlay; reported when present")
    kernel: str = Field("batadv", pattern="^(batadv|static)$", description="batadv (always, on a node); static is "
                        "a stand-in kernel for channel tests and benchmarks only")


def load_config(path: str | Path) -> AgentConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
        cfg = AgentConfig.model_validate(data)
    except OSError as err:
        raise TwinError(f"{p}: cannot read agent config: {err.strerror}") from err
    except (yaml.YAMLError, ValidationError) as err:
        raise TwinError(f"{p}: invalid agent config: {err}") from err
    base = p.resolve().parent
    for k in ("identity", "trust_bundle", "audit_log"):
        v = Path(getattr(cfg, k)).expanduser()
        setattr(cfg, k, str(v if v.is_absolute() else base / v))
    return cfg
