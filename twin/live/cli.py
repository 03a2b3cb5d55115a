"""``twin live keys|deploy|check|status|stop`` and ``twin agent``.

Exit codes as everywhere: 0 all good, 1 a check failed or a node was not restored, 2 bad input
(inventory, config), 3 cannot run here (agents unreachable, SSH failed).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twin.errors import TwinError

live_app = typer.Typer(help="work with a lab of batman-adv nodes running the meshtwin agent (see live/README.md)",
                       no_args_is_help=True)
out = Console()
err = Console(stderr=True)
INV = typer.Argument(Path("live/inventory.yaml"), help="lab inventory (see live/inventory.example.yaml)")


def _inv(path: Path):
    from twin.live.inventory import load

    try:
        return load(path)
    except TwinError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@live_app.command("keys")
def keys_cmd(inventory: Path = INV,
             out_dir: Path = typer.Option(Path("live/keys"), "--out", "-o", help="where keys and configs go"),
             kernel: str = typer.Option("batadv", "--kernel", hidden=True, help="static: stand-in kernel (tests)")):
    """Create the mesh CA, controller and node identities, trust bundle and agent configs (keeps existing ones)."""
    from twin.live.keys import provision

    inv = _inv(inventory)
    cfgs = provision(inv, out_dir, kernel=kernel)
    for name, p in cfgs.items():
        out.print(f"{name}: {p}")
    out.print(f"controller identity {out_dir / 'controller.id'}, trust bundle {out_dir / 'bundle.pem'}; "
              f"keep {out_dir / 'ca.id'} off the lab")


@live_app.command("deploy")
def deploy_cmd(inventory: Path = INV,
               keys: Path = typer.Option(Path("live/keys"), "--keys", help="output of twin live keys"),
               agent_cmd: str = typer.Option("/opt/meshtwin/.venv/bin/twin", "--agent-cmd",
                                             help="the twin command on the nodes"),
               service: str = typer.Option("systemd", "--service", help="systemd | none (nohup + pid file)"),
               prefix: str = typer.Option("", "--prefix", help="install under this root on the nodes (tests)")):
    """Install identity, trust bundle, config and service on every node over SSH; start or restart the
    agent only where something changed (a second deploy changes nothing)."""
    from twin.live.deploy import deploy

    if service not in ("systemd", "none"):
        err.print("error: --service must be systemd or none")
        raise typer.Exit(2)
    inv = _inv(inventory)
    res = deploy(inv, keys, prefix=prefix, agent_cmd=agent_cmd, service=service)
    t = Table(title="twin live deploy", title_justify="left")
    for c in ("node", "result", "files changed", "agent"):
        t.add_column(c)
    for r in res:
        t.add_row(r.node, "[green]ok[/]" if r.ok else f"[red]FAILED[/] {r.error}", str(len(r.changed)), r.service)
    out.print(t)
    raise typer.Exit(0 if all(r.ok for r in res) else 3)


@live_app.command("check")
def check_cmd(inventory: Path = INV, as_json: bool = typer.Option(False, "--json")):
    """Before any run: reachability, identities, clocks, batman-adv version, permissions, allow-lists."""
    from twin.live.ops import check

    res = check(_inv(inventory))
    if as_json:
        out.print_json(json.dumps([{"node": c.node, "ok": c.ok, "checks": c.checks} for c in res]))
    else:
        t = Table(title="twin live check", title_justify="left")
        names = list(dict.fromkeys(k for c in res for k in c.checks))
        t.add_column("node")
        for k in names:
            t.add_column(k)
        for c in res:
            t.add_row(c.node, *[("[green]ok[/] " if c.checks[k][0] else "[red]FAIL[/] ") + c.checks[k][1]
                                if k in c.checks else "-" for k in names])
        out.print(t)
    if any(not c.checks["reachable"][0] for c in res):
        raise typer.Exit(3)
    raise typer.Exit(0 if all(c.ok for c in res) else 1)


@live_app.command("status")
def status_cmd(inventory: Path = INV, as_json: bool = typer.Option(False, "--json")):
    """The running loop (from its status file), pending (unconfirmed) changes, the last incidents."""
    from twin.live.ops import status

    st = status(_inv(inventory))
    if as_json:
        out.print_json(json.dumps(st, default=str))
        return
    run = st["run"]
    if run is None:
        out.print("no live run has been started with this inventory")
    else:
        out.print(f"run {run.get('run')} ({run.get('scenario')}): {run.get('state')}, "
                  f"controller {'running' if run.get('controller_alive') else 'not running'}, "
                  f"{'applying' if run.get('apply') else 'dry run'}, t={run.get('t', '-')} s, "
                  f"{run.get('iterations', 0)} loop iterations")
        for inc in run.get("incidents", []) or []:
            out.print(f"  incident {inc.get('id')}: {inc.get('diagnosis')} on {','.join(inc.get('nodes', []))} "
                      f"-> {inc.get('remedy')} ({inc.get('outcome')})")
    t = Table(title="agents", title_justify="left")
    for c in ("node", "pending change", "halted", "settings"):
        t.add_column(c)
    for name, n in st["nodes"].items():
        if "error" in n:
            t.add_row(name, f"[red]unreachable[/] {n['error']}", "-", "-")
            continue
        p = n.get("pending")
        s = n.get("settings") or {}
        t.add_row(name, "-" if p is None else f"{p['id']} expires in {p['expires_in_s']} s", str(n.get("halted")),
                  f"orig_interval {s.get('orig_interval_ms')} ms, hop_penalty {s.get('hop_penalty')}, "
                  f"hardifs {s.get('hardifs')}")
    out.print(t)


@live_app.command("stop")
def stop_cmd(inventory: Path = INV,
             resume: bool = typer.Option(False, "--resume", help="lift the kill switch on every agent")):
    """Kill switch: stop a running live loop, revert every pending change, restore run-start settings,
    and make every agent refuse actions until `twin live stop --resume`."""
    from twin.live.ops import stop

    res = stop(_inv(inventory), resume=resume)
    if res.get("controller_interrupted"):
        out.print(f"interrupted the live run (pid {res['controller_interrupted']})")
    bad = 0
    for name, n in res["nodes"].items():
        ok = n.get("restored", n.get("ok"))
        bad += not ok
        out.print(f"{name}: {'ok' if ok else 'NOT DONE'} {n.get('settings') or n.get('error') or ''}")
    raise typer.Exit(1 if bad else 0)


def print_actions(events, console: Console, *, applied: bool, limit: int = 30) -> None:
    """What the loop did (``--apply``) or would have done (dry run), as the agents answered."""
    acts = events[events["kind"] == "action"]
    title = "actions" if applied else "dry run: the loop would have sent (each checked by its agent)"
    console.print(f"  {title}: {len(acts)}" + ("" if len(acts) else " (none)"))
    for r in acts.head(limit).itertuples():
        console.print(f"    t={r.t_s:7.2f}s {r.node}: {r.outcome}: {r.detail}", markup=False, highlight=False)
    if len(acts) > limit:
        console.print(f"    ... {len(acts) - limit} more in events.parquet")


def agent_cmd(config: Path = typer.Option(Path("/etc/meshtwin/agent.yaml"), "--config", "-c",
                                          help="agent config (written by twin live keys)")) -> None:
    """Run the node agent (normally as the meshtwin-agent systemd service)."""
    from twin.live.agent import run_agent
    from twin.live.agent_config import load_config

    try:
        cfg = load_config(config)
    except TwinError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    run_agent(cfg)
