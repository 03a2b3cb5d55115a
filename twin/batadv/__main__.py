"""``python -m twin.batadv [mesh|originators|neighbours] [IFNAME]``: this node's batman-adv state as
JSON, read over netlink with pyroute2 (what the live agent does), for checks and debugging."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from twin.batadv import BatadvClient, BatadvError


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "originators"
    ifname = argv[1] if len(argv) > 1 else "bat0"
    if what not in ("mesh", "originators", "neighbours"):
        print(f"usage: python -m twin.batadv [mesh|originators|neighbours] [IFNAME]; got {what!r}", file=sys.stderr)
        return 2
    try:
        with BatadvClient() as c:
            res = getattr(c, what)(ifname)
    except BatadvError as err:
        print(f"batadv: {err}", file=sys.stderr)
        return 3
    print(json.dumps(asdict(res) if what == "mesh" else [asdict(r) for r in res]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
