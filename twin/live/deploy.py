"""``twin live deploy``: install and start the agent on every inventory node over SSH, idempotently.

Why asyncssh and not Ansible: the inventory stays the one file the controller already reads (no
second inventory format to keep in sync), every node is handled concurrently by the same asyncio
code the controller uses, the only things a node needs are an SSH server, ``sh`` and SFTP, and
the whole deploy is testable in-process against a stand-in SSH server. What Ansible would add
(a module library, facts) is not needed for five files and one service.

Per node, in order, each step only when something differs (so a second deploy changes nothing):
create ``PREFIX/etc/meshtwin`` and ``PREFIX/var/lib/meshtwin``; upload the node's identity (mode
0600), the trust bundle and the agent config, comparing SHA-256 first; install the systemd unit
(``live/meshtwin-agent.service``, with the agent command filled in), ``daemon-reload``, then
``enable --now`` or ``restart`` if a file changed. ``--service none`` (nodes without systemd,
and the stand-in node of the tests) runs the agent with ``nohup`` and a pid file instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from twin.live.inventory import Inventory, NodeSpec

UNIT = Path(__file__).resolve().parents[2] / "live" / "meshtwin-agent.service"


@dataclass
class NodeDeploy:
    node: str
    ok: bool = False
    changed: list[str] = field(default_factory=list)
    service: str = ""
    error: str = ""


def _files(keys: Path, node: str, prefix: str, service: str) -> dict[str, tuple[bytes, int]]:
    d = keys / "nodes" / node
    etc = f"{prefix}/etc/meshtwin"
    return {f"{etc}/node.id": ((d / "node.id").read_bytes(), 0o600),
            f"{etc}/bundle.pem": ((d / "bundle.pem").read_bytes(), 0o644),
            f"{etc}/agent.yaml": (_agent_yaml(d / "agent.yaml", prefix, service), 0o644)}


def _agent_yaml(path: Path, prefix: str, service: str) -> bytes:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg["identity"] = ("/run/credentials/meshtwin-agent.service/node.id" if service == "systemd"  # LoadCredential=
                       else f"{prefix}/etc/meshtwin/node.id")
    cfg["trust_bundle"] = f"{prefix}/etc/meshtwin/bundle.pem"
    cfg["audit_log"] = f"{prefix}/var/lib/meshtwin/audit.jsonl"
    return yaml.safe_dump(cfg, sort_keys=False).encode()


def unit_text(agent_cmd: str, prefix: str) -> bytes:
    return UNIT.read_text().replace("/opt/meshtwin/.venv/bin/twin", agent_cmd).replace(
        "/etc/meshtwin/", f"{prefix}/etc/meshtwin/").encode()


async def _deploy_node(inv: Inventory, n: NodeSpec, keys: Path, *, prefix: str, agent_cmd: str, service: str,
                       timeout_s: float) -> NodeDeploy:
    import asyncssh

    r = NodeDeploy(n.name)
    s = n.ssh
    opts = {"host": s.host or n.mgmt, "port": s.port, "username": s.user, "connect_timeout": timeout_s}
    if s.key:
        opts["client_keys"] = [str(inv.path(s.key))]
    if s.known_hosts == "none":
        opts["known_hosts"] = None
    elif s.known_hosts:
        opts["known_hosts"] = str(inv.path(s.known_hosts))
    try:
        async with asyncssh.connect(**opts) as conn:
            async def sh(cmd: str, check: bool = True) -> str:
                res = await conn.run(cmd, check=False, timeout=timeout_s)
                if check and res.exit_status != 0:
                    raise RuntimeError(f"{cmd!r} exited {res.exit_status}: {str(res.stderr).strip()[:300]}")
                return str(res.stdout)

            await sh(f"mkdir -p {shlex.quote(prefix + '/etc/meshtwin')} {shlex.quote(prefix + '/var/lib/meshtwin')}")
            files = _files(keys, n.name, prefix, service)
            if service == "systemd":
                files["/etc/systemd/system/meshtwin-agent.service"] = (unit_text(agent_cmd, prefix), 0o644)
            have = await sh("sha256sum " + " ".join(shlex.quote(p) for p in files) + " 2>/dev/null", check=False)
            remote = {ln.split()[1]: ln.split()[0] for ln in have.splitlines() if len(ln.split()) == 2}
            async with conn.start_sftp_client() as sftp:
                for path, (data, mode) in files.items():
                    if remote.get(path) == hashlib.sha256(data).hexdigest():
                        continue
                    tmp = f"{path}.tmp"
                    async with sftp.open(tmp, "wb", attrs=asyncssh.SFTPAttrs(permissions=mode)) as f:
                        await f.write(data)
                    await sftp.chmod(tmp, mode)
                    await sftp.posix_rename(tmp, path)  # atomic: the agent never reads half a file
                    r.changed.append(path)
            r.service = await (_systemd(sh, bool(r.changed)) if service == "systemd"
                               else _nohup(sh, agent_cmd, prefix, bool(r.changed)))
            r.ok = True
    except (OSError, asyncssh.Error, RuntimeError, TimeoutError) as err:
        r.error = f"{type(err).__name__}: {err}"
    return r


async def _systemd(sh, changed: bool) -> str:
    await sh("systemctl daemon-reload")
    active = (await sh("systemctl is-active meshtwin-agent", check=False)).strip() == "active"
    if not active:
        await sh("systemctl enable --now meshtwin-agent")
        return "started"
    if changed:
        await sh("systemctl restart meshtwin-agent")
        return "restarted"
    return "unchanged"


async def _nohup(sh, agent_cmd: str, prefix: str, changed: bool) -> str:
    pidf = shlex.quote(f"{prefix}/var/lib/meshtwin/agent.pid")
    alive = (await sh(f"test -f {pidf} && kill -0 $(cat {pidf}) 2>/dev/null && echo yes", check=False)).strip()
    if alive == "yes" and not changed:
        return "unchanged"
    if alive == "yes":
        await sh(f"kill $(cat {pidf}); for i in $(seq 50); do kill -0 $(cat {pidf}) 2>/dev/null || break; "
                 f"sleep 0.1; done")
    cfg = shlex.quote(f"{prefix}/etc/meshtwin/agent.yaml")
    log = shlex.quote(f"{prefix}/var/lib/meshtwin/agent.log")
    await sh(f"nohup {agent_cmd} agent --config {cfg} >{log} 2>&1 </dev/null & echo $! >{pidf}")
    return "restarted" if alive == "yes" else "started"


def deploy(inv: Inventory, keys: Path, *, prefix: str = "", agent_cmd: str = "/opt/meshtwin/.venv/bin/twin",
           service: str = "systemd", timeout_s: float = 20.0) -> list[NodeDeploy]:
    async def all_() -> list[NodeDeploy]:
        return list(await asyncio.gather(*(_deploy_node(inv, n, keys, prefix=prefix.rstrip("/"), agent_cmd=agent_cmd,
                                                        service=service, timeout_s=timeout_s) for n in inv.nodes)))

    return asyncio.run(all_())
