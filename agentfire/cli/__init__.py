"""The Typer application: global options and the command modules.

Command modules register themselves on `app` when imported; each keeps its heavy imports inside
the command function so `agentfire --help` stays fast (DESIGN.md rule 8).
"""

from __future__ import annotations

from typing import Optional

import typer

from agentfire import __version__
from agentfire.cli._app import AppState, app

# Each import registers commands on `app`. A command exists only when it works.
from agentfire.cli import kill as _kill  # noqa: E402,F401  (kill, status)
from agentfire.cli import freeze as _freeze  # noqa: E402,F401
from agentfire.cli import triage as _triage  # noqa: E402,F401
from agentfire.cli import blast as _blast  # noqa: E402,F401
from agentfire.cli import capture as _capture  # noqa: E402,F401
from agentfire.cli import runbook as _runbook  # noqa: E402,F401  (runbook, report)
from agentfire.cli import gameday as _gameday  # noqa: E402,F401
from agentfire.cli import incident as _incident  # noqa: E402,F401
from agentfire.cli import doctor as _doctor  # noqa: E402,F401
from agentfire.cli import golden as _golden, sandbox as _sandbox  # noqa: E402,F401
from agentfire.cli import traces as _traces  # noqa: E402,F401
from agentfire.cli import watch as _watch  # noqa: E402,F401


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentfire {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(
        None, "--config", envvar="AGENTFIRE_CONFIG", metavar="PATH",
        help="runbook.yaml to use (default: ./runbook.yaml or the nearest parent's).",
    ),
    incident: Optional[str] = typer.Option(
        None, "--incident", envvar="AGENTFIRE_INCIDENT", metavar="INCIDENT",
        help="Incident to journal into (it must exist, unless --new). Without it, a command that "
             "changes something opens a new one.",
    ),
    new: bool = typer.Option(False, "--new", help="Open a new incident (with the --incident id, if given)."),
    reopen: bool = typer.Option(False, "--reopen", help="Act in a closed incident again (journaled)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who is acting (default: login name)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    wide: bool = typer.Option(
        False, "--wide", help="Tables at full width, nothing folded or cut (the terminal wraps lines)."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options come before the command: agentfire --incident inc-42 kill --region all."""
    from agentfire.cli import _output
    from agentfire.journal import default_actor

    _output.WIDE = wide

    ctx.obj = AppState(config=config, incident=incident, actor=actor or default_actor(), json=json_out,
                       new=new, reopen=reopen)


# global options that take a value (skipped when looking for the command name in argv)
_GLOBAL_VALUED = ("--config", "--incident", "--actor")


def _invoked(argv: list[str]) -> str | None:
    """The command name in argv (after the global options), or None."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return None
        if a in _GLOBAL_VALUED:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a
    return None


def _only(name: str | None) -> tuple[list, list] | None:
    """Keep on `app` only the command (or command group) `name`; returns what to restore.

    Typer turns every registered command into a click command at each start (signature, type
    hints, options: about 40 commands); the one being run is the only one needed. Anything
    ambiguous (no name, an unknown one: click then lists and suggests) keeps them all."""
    from typer.main import get_command_name

    if name is None:
        return None
    cmds = [c for c in app.registered_commands
            if (c.name or get_command_name(c.callback.__name__ if c.callback else "")) == name]
    groups = [g for g in app.registered_groups if (g.name or g.typer_instance.info.name) == name]
    if len(cmds) + len(groups) != 1:
        return None
    saved = (list(app.registered_commands), list(app.registered_groups))
    app.registered_commands[:] = cmds
    app.registered_groups[:] = groups
    return saved


def main() -> None:
    import os
    import sys

    # The CLI process runs on asyncio only. Installed but unused, trio is imported by httpcore just
    # to detect it, and httpx imports its own CLI (click, pygments): together 0.1-0.4 s of every
    # HTTP command's start. A None entry in sys.modules makes those optional imports fail fast.
    for unused in ("trio", "httpx._main"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]
    # shell completion lists every command: only a real run builds just its own
    saved = None if os.environ.get("_AGENTFIRE_COMPLETE") else _only(_invoked(sys.argv[1:]))
    try:
        app(prog_name="agentfire")
    finally:
        if saved is not None:
            app.registered_commands[:], app.registered_groups[:] = saved


# after every command and the global callback are registered: one metavar style in --help
from agentfire.cli._app import tidy_metavars  # noqa: E402

tidy_metavars(app)
