"""``twin emu ...`` commands (mounted by the main CLI as the ``emu`` sub-app)."""

from __future__ import annotations

import json

import typer

emu_app = typer.Typer(help="Emulation helpers: what this machine can run, and clean-up after killed runs.",
                      no_args_is_help=True)


@emu_app.callback()
def _emu() -> None:
    """Emulation mode: real routing code (babeld, yggdrasil in namespaces; batman-adv in UML kernels)."""


@emu_app.command("check")
def check(as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """What this machine can emulate. Probes the namespace tools and daemons, then BOOTS ONE UML
    node (about 3 s) and reads the real kernel's release and batman-adv version from it.

    Exit 0 when batman-adv kernels can run here (UML or host module), 3 when they cannot (the
    report says what is missing)."""
    import time

    import networkx as nx

    from twin.emu.capabilities import EmuError, probe_capabilities
    from twin.emu.uml.lab import BootError, lab_session
    from twin.emu.uml.runner import kernel_versions, require_uml

    rep: dict = {"namespaces": probe_capabilities()}
    code = 0
    try:
        rep["uml"] = require_uml()
        g = nx.Graph()
        g.add_node("probe")
        t = time.monotonic()
        with lab_session(g, boot_timeout_s=60) as lab:
            rep["uml"]["boot_s"] = round(time.monotonic() - t, 2)
            rep["uml"] |= kernel_versions(lab, "probe")
    except (EmuError, BootError) as err:
        rep["uml_error"] = str(err)
        code = 3
    if as_json:
        typer.echo(json.dumps(rep, default=str))
    else:
        ns = rep["namespaces"]
        typer.echo("namespaces: " + ", ".join(f"{k}={'yes' if v is True else 'no' if v is False else v}"
                                              for k, v in ns.items()))
        if code:
            typer.echo(f"UML nodes: cannot run here: {rep['uml_error']}")
        else:
            u = rep["uml"]
            typer.echo(f"UML nodes: one booted in {u['boot_s']} s; kernel {u['uml_kernel']}, batman-adv "
                       f"{u['batman_adv']} ({u['algo']}), {u['batctl']}")
    raise typer.Exit(code)


@emu_app.command("clean")
def clean(include_live: bool = typer.Option(False, "--include-live",
                                            help="also remove runs whose owner process is still alive"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Remove namespaces, veths, daemons and nftables tables left by killed emu runs."""
    from twin.emu.capabilities import EmuError, is_root
    from twin.emu.cleanup import clean_all

    if not is_root():
        typer.echo(f"{EmuError.__name__}: emu mode needs root: cleaning namespaces needs CAP_NET_ADMIN", err=True)
        raise typer.Exit(3)  # cannot run here, not a failed target
    rep = clean_all(include_live=include_live)
    if as_json:
        typer.echo(json.dumps(rep.as_dict()))
        return
    for label, items in (("processes killed", rep.processes), ("namespaces deleted", rep.netns),
                         ("root links deleted", rep.links), ("nft tables (with their namespace)", rep.nft_tables),
                         ("state dirs removed", rep.state_dirs), ("live runs skipped", rep.skipped_live),
                         ("errors", rep.errors)):
        if items:
            typer.echo(f"{label} ({len(items)}):")
            for it in items:
                typer.echo(f"  {it}")
    if not rep.total() and not rep.state_dirs:
        typer.echo("nothing to clean")
