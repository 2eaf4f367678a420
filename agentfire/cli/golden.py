"""`agentfire golden save|list`: known-good trajectories per input class, for `triage --golden`."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from agentfire.cli._app import app, emit_json, handles_errors, out_console, safe_text, state, want_json
from agentfire.cli._output import id_column, print_table

golden_app = typer.Typer(
    name="golden", no_args_is_help=True, rich_markup_mode=None,
    help="Known-good trajectories per input class (runbook.yaml golden.dir), for triage --golden.",
    epilog="Example: agentfire golden save TRACE_ID --class refund_request",
)
app.add_typer(golden_app)


@golden_app.command(
    "save", epilog="Example: agentfire golden save 3f9c2a...e1 --class invoice_forward")
@handles_errors
def save(
    ctx: typer.Context,
    trace_id: str = typer.Argument(..., help="A known-good trajectory in the trace store."),
    class_name: str = typer.Option(..., "--class", "-c", help="The input class it is golden for."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite a class that holds another trace."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Keep a known-good run as the golden trajectory of an input class (<golden.dir>/<class>.json).
    Saving the same trace again is a no-op; another trace needs --replace."""
    import asyncio

    from agentfire import golden
    from agentfire.providers import build
    from agentfire.tracelist import get_trajectory  # the exact id, or a unique prefix

    st = state(ctx)
    rb = st.runbook()
    golden.check_class(class_name)

    async def fetch():  # type: ignore[no-untyped-def]
        store = build("traces", rb.traces, rb)
        try:
            return await get_trajectory(store, trace_id)
        finally:
            await store.aclose()

    traj = asyncio.run(fetch())
    path, outcome = golden.save(golden.golden_dir(rb), traj, class_name, actor=st.actor, replace=replace)
    journal = st.journal(create=False)
    if journal is not None and outcome != "unchanged":
        journal.append("golden.save", actor=st.actor, trace_id=trace_id, outcome=outcome,
                       after={"class": class_name, "path": str(path)})
    doc = {"class": class_name, "trace_id": trace_id, "path": str(path), "outcome": outcome,
           "tool_calls": [s.name for s in traj.tool_steps], "status": traj.status}
    if want_json(ctx, json_out):
        emit_json(doc)
        return
    line = Text(f"{outcome}: class {class_name} <- ")
    line.append_text(safe_text(trace_id, 100)).append_text(Text(f"  ({path})"))
    out_console().print(line)
    out_console().print(Text("tool calls: ").append_text(safe_text(" -> ".join(doc["tool_calls"]), 600)))
    if traj.status != "finished":
        out_console().print(Text(f"warning: this trajectory is {traj.status}, not finished", style="yellow"))


@golden_app.command("list", epilog="Example: agentfire golden list --json")
@handles_errors
def list_golden(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """The golden classes in golden.dir, with their trace and tool-call sequence."""
    from agentfire import golden

    rb = state(ctx).runbook()
    d = golden.golden_dir(rb)
    rows = []
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            traj = golden.load_file(f)
            rows.append({"class": f.stem, "trace_id": traj.trace_id, "path": str(f),
                         "tool_calls": [s.name for s in traj.tool_steps], "error": None})
        except Exception as exc:  # one broken file must not hide the others
            rows.append({"class": f.stem, "trace_id": None, "path": str(f), "tool_calls": [],
                         "error": str(exc)})
    if want_json(ctx, json_out):
        emit_json({"dir": str(d), "classes": rows})
        return
    table = Table(title=f"golden trajectories in {d}", title_justify="left")
    id_column(table, "class")
    id_column(table, "trace")
    table.add_column("tool calls")
    for r in rows:
        table.add_row(safe_text(r["class"], 80), safe_text(r["trace_id"] or r["error"], 200),
                      safe_text(" -> ".join(r["tool_calls"]), 400))
    print_table(table)
