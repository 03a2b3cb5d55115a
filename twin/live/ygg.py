"""yggdrasil (the fallback overlay) as the agent reports it: its admin socket, when present.

The admin socket speaks one JSON request per connection (``{"request": "getSelf"}``) and answers
one JSON document; ``getSelf`` gives the node's overlay address, ``getPeers`` its peers (a list in
0.5, a map keyed by address in 0.4: both are counted the same). No socket, no report: the overlay
is optional on a node.
"""

from __future__ import annotations

import json
import os
import socket


def _ask(path: str, request: str, timeout_s: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(json.dumps({"request": request}).encode())
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            try:
                doc = json.loads(data)
                break
            except ValueError:
                continue
    doc = json.loads(data)
    if doc.get("status") != "success":
        raise OSError(f"yggdrasil {request}: {doc.get('error', doc.get('status'))}")
    return doc.get("response", {})


def present(path: str | None) -> bool:
    return bool(path) and os.path.exists(path)


def read(path: str | None, timeout_s: float = 0.5) -> dict | None:
    """``{"address", "peers", "peer_addresses"}`` from the admin socket at ``path``, or None."""
    if not path or not os.path.exists(path):
        return None
    try:
        me = _ask(path, "getSelf", timeout_s)
        peers = _ask(path, "getPeers", timeout_s).get("peers", [])
    except (OSError, ValueError) as err:
        return {"error": str(err)}
    addrs = sorted(peers) if isinstance(peers, dict) else sorted(str(p.get("address", p.get("key", ""))) for p in peers)
    return {"address": me.get("address"), "peers": len(addrs), "peer_addresses": addrs[:32]}
