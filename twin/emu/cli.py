"""``twin emu ...`` commands (mounted by the main CLI as the ``emu`` sub-app)."""

from __future__ import annotations

import json

import typer

emu_app = typer.Typer(help="Mininet/babeld emulation helpers.", no_args_is_help=True)


@emu_app.callback()
def _emu() -> None:
    """Emulation mode: real routing daemons in network namespaces."""


@emu_app.command("clean")
def clean(include_live: bool = typer.Option(False, "--include-live",
                                            help="also remove runs whose owner process is still alive"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Remove namespaces, veths, daemons and nftables tables left by killed emu runs."""
    from twin.emu.capabilities import EmuError, is_root
    from twin.emu.cleanup import clean_all

    if not is_root():
        typer.echo(f"{EmuError.__name__}: emu mode needs root: cleaning namespaces needs CAP_NET_ADMIN", err=True)
        raise typer.Exit(1)
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
