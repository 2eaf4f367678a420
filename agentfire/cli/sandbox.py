"""`agentfire sandbox seed`: write a synthetic incident into the runbook's local files store."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import app, emit_json, err_console, handles_errors, out_console, state, want_json
from agentfire.cli._output import print_table

sandbox_app = typer.Typer(
    name="sandbox", no_args_is_help=True, rich_markup_mode=None,
    help="Synthetic incidents in the local trace store, for drills and for trying triage and blast.",
    epilog="Example: agentfire sandbox seed --scenario runaway_loop",
)
app.add_typer(sandbox_app)


@sandbox_app.command(
    "seed",
    epilog="Example: agentfire sandbox seed --scenario destructive_sql --traces 1000 --seed 7 "
           "&& agentfire triage <a trace id it prints>",
)
@handles_errors
def seed(
    ctx: typer.Context,
    scenario: str = typer.Option("wrong_recipient", "--scenario", "-s",
                                 help="A scenario name (agentfire sandbox scenarios) or 'all'."),
    traces: int = typer.Option(600, "--traces", "-n", min=20, help="Trajectories per scenario (about 4% fail)."),
    seed_value: int = typer.Option(7, "--seed", help="Random seed: the same seed writes the same incident."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Write normal and failing trajectories of a customer-support agent into the runbook's
    `files` trace store, with the ground truth beside them (<store>/<scenario>.truth.json).
    Refuses (exit 2) when the configured trace store is not `files`."""
    from agentfire.errors import ConfigError
    from agentfire.sandbox import SCENARIOS, seed_store

    st = state(ctx)
    rb = st.runbook()
    if rb.traces.kind != "files":
        raise ConfigError(
            f"{rb.path}: traces.kind is {rb.traces.kind!r}; `sandbox seed` writes only a local "
            "`files` store (point traces at kind: files, or use --config with a sandbox runbook)"
        )
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    path = rb.resolve_path(rb.traces.path)
    as_json = want_json(ctx, json_out)
    console = err_console()
    if console.is_terminal and not as_json:
        with console.status(f"seeding {', '.join(names)} into {path} ..."):
            results = [seed_store(path, name, traces=traces, seed=seed_value) for name in names]
    else:
        results = [seed_store(path, name, traces=traces, seed=seed_value) for name in names]
    journal = st.journal(create=False)
    if journal is not None:
        journal.append("sandbox.seed", actor=st.actor, store=str(path), outcome="seeded",
                       after=[{"scenario": r.scenario, "seed": r.seed, "traces": r.traces,
                               "failing": r.failing} for r in results])
    if as_json:
        emit_json({"store": str(path), "scenarios": [r.to_json() for r in results]})
        return
    render(path, results)


def render(path: Any, results: list[Any]) -> None:
    table = Table(title=f"seeded {path}", title_justify="left")
    for col in ("scenario", "trajectories", "failing", "still running", "users hit", "ground truth"):
        table.add_column(col, justify="right" if col in ("trajectories", "failing", "still running", "users hit") else "left")
    for r in results:
        table.add_row(Text(r.scenario), str(r.traces), str(r.failing), str(r.still_running),
                      str(len(r.truth["affected_users"])), Text(str(r.truth_file)))
    print_table(table)
    for r in results:
        out_console().print(Text(f"{r.scenario}: try", style="bold"))
        for tid in r.examples:
            out_console().print(Text(f"  agentfire triage {tid}"))
    err_console().print(Text("the store is local and synthetic: nothing real was touched"))


@sandbox_app.command("scenarios", epilog="Example: agentfire sandbox scenarios --json")
@handles_errors
def list_scenarios(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """The incident scenarios `sandbox seed` can write."""
    from agentfire.sandbox import scenarios

    if want_json(ctx, json_out):
        emit_json([{"name": k, "description": v} for k, v in scenarios().items()])
        return
    table = Table(title="sandbox scenarios", title_justify="left")
    table.add_column("scenario")
    table.add_column("what goes wrong")
    for k, v in scenarios().items():
        table.add_row(Text(k), Text(v))
    print_table(table)
