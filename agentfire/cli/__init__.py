"""The Typer application: global options and the command modules.

Command modules register themselves on `app` when imported; each keeps its heavy imports inside
the command function so `agentfire --help` stays fast (DESIGN.md rule 8).
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from agentfire import __version__
from agentfire.cli._app import AppState, app as _APP

# Each command module registers its commands on the app when imported. A command exists only
# when it works. `from agentfire.cli import app` (tests, docs, completion) imports them all, in this
# order; a run of `kill` or `status` imports only its own (see main()).
_COMMAND_MODULES = ("kill",  # kill, status
                    "freeze", "triage", "blast", "capture",
                    "runbook",  # runbook, report
                    "gameday", "incident", "doctor", "golden", "sandbox", "traces", "watch")
# status shows freeze's spend caps (freeze registers them in kill.STATUS_EXTRAS)
_ONLY_MODULES = {"kill": ("kill",), "status": ("kill", "freeze"), "blast": ("blast",)}
_all_registered = False


def _register(modules: tuple[str, ...]) -> None:
    import importlib

    for m in modules:
        importlib.import_module(f"agentfire.cli.{m}")
    # after the commands and the global callback are registered: one metavar style in --help
    from agentfire.cli._app import tidy_metavars

    tidy_metavars(_APP)


def _register_all() -> Any:
    global _all_registered
    if not _all_registered:
        _register(_COMMAND_MODULES)
        _all_registered = True
        globals()["app"] = _APP
    return _APP


def __getattr__(name: str) -> Any:
    if name == "app":
        return _register_all()
    if name.startswith("_") and name[1:] in _COMMAND_MODULES:  # the old `_kill`, `_freeze` aliases
        _register_all()
        import importlib

        return importlib.import_module(f"agentfire.cli.{name[1:]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentfire {__version__}")
        raise typer.Exit()


@_APP.callback()
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
    app = _APP
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
    # shell completion lists every command: only a real run builds (and imports) just its own
    completing = bool(os.environ.get("_AGENTFIRE_COMPLETE"))
    name = None if completing else _invoked(sys.argv[1:])
    if name in _ONLY_MODULES and not _all_registered:
        _register(_ONLY_MODULES[name])
    else:
        _register_all()
    saved = None if completing else _only(name)
    try:
        _APP(prog_name="agentfire")
    finally:
        if saved is not None:
            _APP.registered_commands[:], _APP.registered_groups[:] = saved
