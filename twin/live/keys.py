"""Provisioning for a lab: the mesh CA, the controller's and every node's identity, the trust
bundle, and each node's agent config, all written atomically with keys mode 0600.

``twin live keys INVENTORY --out DIR`` writes::

    DIR/ca.id                     mesh CA key (keep it off the lab; needed only to add nodes or revoke)
    DIR/controller.id             the controller identity (inventory: controller.identity)
    DIR/bundle.pem                CA key, controller + node identity documents, revocations
    DIR/nodes/<name>/node.id      each node's identity
    DIR/nodes/<name>/agent.yaml   each node's agent config (twin agent --config)

Re-running keeps existing identities (idempotent), so a deploy can be repeated safely.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from twin.atomic import write_bytes, write_text
from twin.live.inventory import Inventory
from twin.pqc import MeshCA, NodeIdentity, TrustBundle
from twin.pqc.sign import pack_fields, read_pem, unpack_fields, write_pem


def _load_or_new_ca(path: Path, mesh: str) -> MeshCA:
    if path.exists():
        raw, hdr = read_pem(path, "MESHTWIN MESH CA")
        key, serial = unpack_fields(raw, 2, "mesh CA file")
        from twin.pqc import get_backend

        be = get_backend(hdr.get("Backend"))
        return MeshCA(mesh, be.sig_private_from_bytes(key), be, next_serial=int(serial.decode()))
    ca = MeshCA.generate(mesh)
    _save_ca(path, ca)
    return ca


def _save_ca(path: Path, ca: MeshCA) -> None:
    write_pem(path, "MESHTWIN MESH CA", pack_fields(ca.key.private_bytes(), str(ca.next_serial).encode()),
              {"Backend": ca.backend.name, "Mesh": ca.mesh})


def _identity(ca: MeshCA, path: Path, name: str) -> NodeIdentity:
    if path.exists():
        ident = NodeIdentity.load(path)
        if ident.spiffe_id == f"spiffe://{ca.mesh}/node/{name}":
            return ident
    ident = ca.new_identity(name, now=time.time() - 60)
    ident.save(path)
    return ident


def provision(inv: Inventory, out: Path, *, agent_port: int | None = None, audit_dir: str | None = None,
              kernel: str = "batadv") -> dict[str, Path]:
    """Create (or keep) every identity and write the bundle and agent configs; {name: agent.yaml}."""
    out.mkdir(parents=True, exist_ok=True)
    ca = _load_or_new_ca(out / "ca.id", inv.mesh)
    controller = _identity(ca, out / "controller.id", "controller")
    bundle = TrustBundle(inv.mesh)
    bundle.add_ca(ca.public_key)
    bundle.add_identity(controller.document)
    configs: dict[str, Path] = {}
    idents = {}
    for n in inv.nodes:
        d = out / "nodes" / n.name
        idents[n.name] = _identity(ca, d / "node.id", n.name)
        bundle.add_identity(idents[n.name].document)
    _save_ca(out / "ca.id", ca)
    bundle.save(out / "bundle.pem")
    for n in inv.nodes:
        d = out / "nodes" / n.name
        write_bytes(d / "bundle.pem", (out / "bundle.pem").read_bytes(), mode=0o644)
        cfg = {"node": n.name, "identity": "node.id", "trust_bundle": "bundle.pem",
               "controllers": [controller.spiffe_id], "listen": "0.0.0.0",
               "port": agent_port if agent_port is not None else (n.port or inv.channel.port),
               "mesh_if": n.mesh_if, "hardifs": n.hardifs, "allow_actions": n.allow_actions,
               "allow_faults": n.allow_faults, "rate_per_min": inv.safety.rate_per_node,
               "audit_log": f"{audit_dir}/{n.name}.audit.jsonl" if audit_dir else "/var/lib/meshtwin/audit.jsonl",
               "kernel": kernel}
        write_text(d / "agent.yaml", yaml.safe_dump(cfg, sort_keys=False))
        configs[n.name] = d / "agent.yaml"
    return configs
