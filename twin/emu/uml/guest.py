"""The program every UML node runs as its init (standard library only, never imports the project).

Why stdlib only: each guest pays for every system call under UML and its RAM is host RAM; this
agent starts in ~0.2 s in ~10 MB, where pyroute2 alone costs 1.8 s and 33 MB per guest. Netlink
messages are therefore encoded and decoded on the host (:mod:`twin.batadv`, the same ``nla_map``
the live agent uses) and only relayed here as bytes.

Boot: mount the guest's own /proc, /sys and a tmpfs on /run (its writable state; /tmp stays the
host's read-only view, so a project checked out under /tmp still works), load batman-adv from the
UML module tree, bring up the mesh interfaces and bat0 with the settings on the kernel command
line (``mt.*`` keys), then print ``MT-READY`` on the console (the host waits for that line, it
never sleeps) or ``MT-FAIL <why>`` and power off.

Serves newline-delimited JSON on TCP (management interface): ``ping`` (guest monotonic clock,
for the host's per-node offset), ``nl`` (relay one netlink request, base64), ``ifindex``,
``exec`` (argv with timeout; ip/nft/tc/batctl), ``restart`` (bat0 re-created), ``counters``,
``probes`` (configure UDP probe flows over bat0), ``results`` (drain probe sends, arrivals and round
trips). Probe latency is taken on ONE clock (the sender's round trip, halved), delivery from arrivals at the receiver:
guest clocks drift seconds apart from the host's and from each other.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

PROBE_PORT = 7797
_PKT = struct.Struct("!BIIIq")  # type (0 probe, 1 echo), flow, sender's boot epoch, seq, sender t_ns


def cmdline():
    kv = {}
    with open("/proc/cmdline") as f:
        for tok in f.read().split():
            if tok.startswith("mt.") and "=" in tok:
                k, v = tok[3:].split("=", 1)
                kv[k] = v
    return kv


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(argv, timeout=10.0):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {p.returncode}: {p.stderr.strip()[:300]}")
    return p.stdout


def mount():
    for fs, mnt in (("proc", "/proc"), ("sysfs", "/sys"), ("tmpfs", "/run")):
        subprocess.run(["mount", "-t", fs, fs, mnt], check=False)


def ip_batch(lines):
    """Many ``ip`` commands in ONE process: every fork+exec costs a UML guest milliseconds of host
    CPU, and a 50-node lab boots 50 guests at once (the static neighbours alone were 49 commands)."""
    p = subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"ip -batch -> {p.returncode}: {p.stderr.strip()[:300]}")


def boot(cfg):
    mods = cfg["mods"]
    for mod in ["batman-adv"] + [m for m in cfg.get("extra_mods", "").split(",") if m]:
        run(["modprobe", "-d", mods, mod])
    if cfg.get("algo", "BATMAN_IV") != "BATMAN_IV":
        run(["batctl", "ra", cfg["algo"]])
    links = ["link set lo up"]
    mg = cfg.get("mgmt_if")
    if mg:
        links += [f"addr add {cfg['mgmt_ip']} dev {mg}", f"link set {mg} up"]
    ip_batch(links)
    bat0(cfg)


def bat0(cfg):
    """bat0 with the run's settings, its address and static neighbours: at boot, and again for the
    ``restart`` remedy (bat0 deleted and re-created must come back as the same node)."""
    links = [f"link add bat0 address {cfg['bat_mac']} type batadv"]
    for ifn in cfg["mesh_ifs"].split(","):
        links += [f"link set {ifn} up", f"link set {ifn} master bat0"]
    ip_batch(links)
    b = ["batctl", "meshif", "bat0"]
    run(b + ["orig_interval", cfg.get("orig_ms", "1000")])
    run(b + ["hop_penalty", cfg.get("hp", "30")])
    run(b + ["aggregation", cfg.get("agg", "1")])
    run(b + ["distributed_arp_table", "0"])  # dynamic ARP over DAT was seen never to resolve
    up = [f"addr add {cfg['bat_ip']} dev bat0", "link set bat0 up"]
    # static neighbours for every node's bat0 (addresses follow the node index, see twin.emu.uml.lab)
    n = int(cfg["n"])
    net = cfg["bat_ip"].split(".")[0:2]
    for i in range(n):
        ip = f"{net[0]}.{net[1]}.{(i + 1) >> 8}.{(i + 1) & 255}"
        mac = "02:6d:74:{:02x}:{:02x}:{:02x}".format(int(cfg["lab"], 16) & 255, (i + 1) >> 8, (i + 1) & 255)
        if mac != cfg["bat_mac"]:
            up.append(f"neigh replace {ip} lladdr {mac} dev bat0 nud permanent")
    ip_batch(up)


class Probes:
    """UDP probe flows over bat0 and the echo responder."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", PROBE_PORT))
        self.lock = threading.Lock()
        self.flows = []  # dicts: id, dst, period, next, seq, end
        self.sent, self.arrived, self.rtt = [], [], []
        threading.Thread(target=self.rx, daemon=True).start()
        threading.Thread(target=self.tx, daemon=True).start()

    def configure(self, flows, start_mono, end_mono):
        with self.lock:
            self.flows = [{"id": int(f["id"]), "epoch": int(f.get("epoch", 0)), "dst": f["dst"],
                           "period": 1.0 / float(f["rate"]),
                           "next": start_mono + float(f.get("phase", 0.0)), "seq": 0, "end": end_mono}
                          for f in flows]

    def tx(self):
        while True:
            now = time.monotonic()
            nxt = now + 0.05
            with self.lock:
                for f in self.flows:
                    if f["next"] <= now < f["end"]:
                        t = time.monotonic_ns()
                        try:
                            self.sock.sendto(_PKT.pack(0, f["id"], f["epoch"], f["seq"], t), (f["dst"], PROBE_PORT))
                            ok = 1
                        except OSError:
                            ok = 0
                        self.sent.append((f["id"], f["epoch"], f["seq"], t, ok))
                        f["seq"] += 1
                        f["next"] += f["period"]
                        if f["next"] < now:  # never burst to catch up after a stall
                            f["next"] = now + f["period"]
                    if f["next"] < f["end"]:
                        nxt = min(nxt, f["next"])
            time.sleep(max(0.0, nxt - time.monotonic()))

    def rx(self):
        while True:
            data, addr = self.sock.recvfrom(64)
            if len(data) != _PKT.size:
                continue
            typ, fid, epoch, seq, t = _PKT.unpack(data)
            now = time.monotonic_ns()
            if typ == 0:
                with self.lock:
                    self.arrived.append((fid, epoch, seq))
                try:
                    self.sock.sendto(_PKT.pack(1, fid, epoch, seq, t), addr)
                except OSError:
                    pass
            else:
                with self.lock:
                    self.rtt.append((fid, epoch, seq, now - t))

    def drain(self):
        with self.lock:
            out = {"sent": self.sent, "arrived": self.arrived, "rtt": self.rtt}
            self.sent, self.arrived, self.rtt = [], [], []
        return out


def netlink_relay(nl, data):
    """Send one request, return every reply message up to NLMSG_DONE / NLMSG_ERROR."""
    seq = int.from_bytes(data[8:12], "little")
    nl.send(data)
    out = bytearray()
    while True:
        buf = nl.recv(1 << 16)
        off = 0
        done = False
        while off + 16 <= len(buf):
            ln = int.from_bytes(buf[off:off + 4], "little")
            typ = int.from_bytes(buf[off + 4:off + 6], "little")
            mseq = int.from_bytes(buf[off + 8:off + 12], "little")
            flags = int.from_bytes(buf[off + 6:off + 8], "little")
            if mseq == seq:
                out += buf[off:off + ((ln + 3) & ~3)]
                if typ in (2, 3) or not flags & 0x2:  # ERROR/DONE, or a reply that is not multipart
                    done = typ in (2, 3) or not (flags & 0x2)
            off += (ln + 3) & ~3 if ln >= 16 else len(buf)
        if done:
            return bytes(out)


def serve(cfg, probes):
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    nl.bind((0, 0))
    nl_lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((cfg["mgmt_ip"].split("/")[0], int(cfg.get("port", "7700"))))
    srv.listen(8)
    say(f"MT-READY {time.monotonic():.6f}")  # only once the host can connect

    def handle(req):
        op = req.get("op")
        if op == "ping":
            return {"mono": time.monotonic(), "name": cfg.get("name")}
        if op == "nl":
            with nl_lock:
                return {"data": base64.b64encode(netlink_relay(nl, base64.b64decode(req["data"]))).decode()}
        if op == "ifindex":
            return {"ifindex": socket.if_nametoindex(req["name"])}
        if op == "exec":
            p = subprocess.run(req["argv"], capture_output=True, text=True, input=req.get("input"),
                               timeout=float(req.get("timeout", 10)))
            return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
        if op == "spawn":  # a detached process (e.g. the live node agent), its output to a file
            with open(req.get("log", "/run/spawn.log"), "ab") as log:
                p = subprocess.Popen(req["argv"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=req.get("env"))
            return {"pid": p.pid}
        if op == "restart":  # the routing restart remedy: bat0 deleted and re-created as at boot
            run(["ip", "link", "del", "bat0"])
            bat0(cfg)
            return {}
        if op == "counters":
            res = {}
            for ifn in os.listdir("/sys/class/net"):
                d = f"/sys/class/net/{ifn}/statistics/"
                with open(d + "tx_packets") as a, open(d + "rx_packets") as b:
                    res[ifn] = [int(a.read()), int(b.read())]
            return {"counters": res}
        if op == "probes":
            probes.configure(req["flows"], float(req["start_mono"]), float(req["end_mono"]))
            return {}
        if op == "results":
            return probes.drain()
        raise ValueError(f"unknown op {op!r}")

    def client(conn):
        f = conn.makefile("rwb")
        for line in f:
            try:
                rep = {"ok": True} | handle(json.loads(line))
            except Exception as exc:  # noqa: BLE001 - every error goes back to the host
                rep = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            f.write(json.dumps(rep).encode() + b"\n")
            f.flush()
        conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def main():
    cfg = {}
    try:
        mount()
        cfg = cmdline()
        boot(cfg)
        probes = Probes()
    except Exception as exc:  # noqa: BLE001 - the host reads this line and fails fast
        say(f"MT-FAIL {type(exc).__name__}: {exc}")
        sys.stdout.flush()
        os.system("halt -f")
        return
    serve(cfg, probes)


if __name__ == "__main__":
    main()
