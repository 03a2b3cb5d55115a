"""``twin live deploy`` against a stand-in node: a real OpenSSH server on loopback (Debian
``openssh-server``, root only), with a host key and a client key made for the test. The deployed
agent is the real ``twin agent`` process (stand-in kernel: this host has no batman-adv)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from twin.live.deploy import deploy
from twin.live.inventory import load
from twin.live.keys import provision
from twin.live.loopback import free_ports
from twin.live.ops import check

ROOT = Path(__file__).resolve().parents[1]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")  # asyncssh importing DSA support
needs_sshd = pytest.mark.skipif(os.geteuid() != 0 or not Path(SSHD).exists(),
                                reason="needs root and openssh-server (setup.sh installs it as root)")


@pytest.fixture()
def sshd(tmp_path):
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_ports(1)[0]
    (d / "config").write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'pid'}\n"
                              f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                              "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                              "UsePAM no\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "config")], stderr=subprocess.PIPE)
    deadline = time.time() + 10
    import socket

    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield {"port": port, "key": d / "client"}
    proc.terminate()
    proc.wait(5)


def _inventory(tmp_path: Path, sshd: dict, allow: list[str]) -> Path:
    inv = {"mesh": "lab", "controller": {"identity": "keys/controller.id", "trust_bundle": "keys/bundle.pem"},
           "nodes": [{"name": "n0", "mgmt": "127.0.0.1", "port": free_ports(1)[0] if not (tmp_path / "inv.yaml")
                      .exists() else yaml.safe_load((tmp_path / "inv.yaml").read_text())["nodes"][0]["port"],
                      "allow_actions": allow,
                      "ssh": {"port": sshd["port"], "user": "root", "key": str(sshd["key"]), "known_hosts": "none"}}]}
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inv))
    return tmp_path / "inv.yaml"


@needs_sshd
def test_deploy_installs_and_starts_the_agent_and_a_second_deploy_changes_nothing(tmp_path, sshd):
    prefix = str(tmp_path / "node-root")
    cmd = f"env PYTHONPATH={ROOT} {sys.executable} -m twin.cli"
    inv = load(_inventory(tmp_path, sshd, ["set_orig_interval", "set_hop_penalty"]))
    provision(inv, tmp_path / "keys", kernel="static")
    pidf = Path(prefix) / "var/lib/meshtwin/agent.pid"
    try:
        first = deploy(inv, tmp_path / "keys", prefix=prefix, agent_cmd=cmd, service="none")
        assert first[0].ok, first[0].error
        assert first[0].service == "started" and len(first[0].changed) == 3
        assert oct((Path(prefix) / "etc/meshtwin/node.id").stat().st_mode & 0o777) == "0o600"
        pid = int(pidf.read_text())
        deadline = time.time() + 30
        while True:  # the agent process imports and starts listening
            res = check(inv)[0]
            if res.checks["reachable"][0] or time.time() > deadline:
                break
            time.sleep(0.5)
        assert res.ok, res.checks
        again = deploy(inv, tmp_path / "keys", prefix=prefix, agent_cmd=cmd, service="none")
        assert again[0].ok and again[0].changed == [] and again[0].service == "unchanged"
        assert int(pidf.read_text()) == pid
        # a changed allow-list: only the config changes, the agent restarts
        inv = load(_inventory(tmp_path, sshd, ["set_orig_interval"]))
        provision(inv, tmp_path / "keys", kernel="static")
        third = deploy(inv, tmp_path / "keys", prefix=prefix, agent_cmd=cmd, service="none")
        assert third[0].service == "restarted" and [Path(p).name for p in third[0].changed] == ["agent.yaml"]
        assert int(pidf.read_text()) != pid
    finally:
        if pidf.exists():
            try:
                os.kill(int(pidf.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_deploy_reports_an_unreachable_node(tmp_path):
    port = free_ports(1)[0]
    inv = {"mesh": "lab", "controller": {"identity": "keys/controller.id", "trust_bundle": "keys/bundle.pem"},
           "nodes": [{"name": "n0", "mgmt": "127.0.0.1", "ssh": {"port": port, "known_hosts": "none"}}]}
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inv))
    inv = load(tmp_path / "inv.yaml")
    provision(inv, tmp_path / "keys", kernel="static")
    r = deploy(inv, tmp_path / "keys", prefix=str(tmp_path / "x"), timeout_s=3)[0]
    assert not r.ok and ("Connection" in r.error or "111" in r.error), r.error
