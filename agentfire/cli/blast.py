"""`agentfire blast`: minute four, the blast radius."""

from __future__ import annotations

import sys

from pathlib import Path
from typing import Any, Optional

import typer
from agentfire.cli._lazyrich import Table, Text  # Rich only when a table or a terminal needs it

from agentfire.cli._app import (
    app, err_console, err_line, fail, handles_errors, out_console, safe_text, state, want_json, warn,
)
from agentfire.cli._output import (
    command_for, id_column, next_steps, optional_column, print_table, same_command,
)

FIRST_ROWS = 20

EPILOG = (
    "Example: agentfire --incident inc-42 blast --tool send_email --arg 'to~landlord' --since 6h "
    "--out affected.csv\n\n"
    "More: agentfire blast --like 3f2a...c1 (signature from triage's off-rails step);  "
    "agentfire blast --tool read_inbox --then send_email --json;  "
    "agentfire blast --signature sig.yaml --emit-sql clickhouse"
)


@app.command(epilog=EPILOG)
@handles_errors
def blast(
    ctx: typer.Context,
    tool: Optional[str] = typer.Option(None, "--tool", metavar="NAME", help="Tool name, exact or glob (send_*)."),
    then: Optional[list[str]] = typer.Option(
        None, "--then", metavar="NAME",
        help="A later tool in the same trajectory (repeatable): --tool A --then B. "
             "--arg/--output-matches/--level apply to the last step."),
    arg: Optional[list[str]] = typer.Option(
        None, "--arg", metavar="'PATH OP VALUE'",
        help="Condition on the tool's arguments: PATH=VALUE, PATH~TEXT (contains), 'PATH re REGEX', "
             "'PATH exists'. Repeatable; all must hold."),
    output_matches: Optional[str] = typer.Option(None, "--output-matches", metavar="REGEX",
                                                 help="Regular expression searched in the step's output."),
    level: Optional[str] = typer.Option(None, "--level", help="DEBUG, DEFAULT, WARNING or ERROR."),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME",
                                        help="Some model call in the trajectory used this model (glob)."),
    metadata: Optional[list[str]] = typer.Option(None, "--metadata", metavar="KEY=VALUE",
                                                 help="Some observation carries this metadata (repeatable)."),
    signature_file: Optional[Path] = typer.Option(None, "--signature", metavar="FILE.yaml",
                                                  help="The signature in a file (same fields)."),
    like: Optional[str] = typer.Option(
        None, "--like", metavar="TRACE_ID[:STEP]",
        help="Derive the signature from triage's off-rails step of this trace (or STEP); it is "
             "printed as YAML to edit and pass back with --signature."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DURATION", help="Window: the last 30m, 6h, 2d..."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="ISO", help="Window start (ISO time, UTC by default)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="ISO", help="Window end (default: now)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE.csv|FILE.json",
                                       help="Write every hit (written atomically, mode 0600)."),
    emit_sql: Optional[str] = typer.Option(
        None, "--emit-sql", metavar="clickhouse|duckdb",
        help="Print the signature as SQL for your own engine (self-hosted Langfuse ClickHouse, or "
             "DuckDB/Spark over a Langfuse blob-storage export) and exit."),
    export_source: Optional[str] = typer.Option(
        None, "--export-source", metavar="SQL",
        help="With --emit-sql duckdb: the table expression to read (default: "
             "read_json_auto('langfuse-export/observations/*.jsonl'))."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout (shape in README)."),
) -> None:
    """Minute four: every trajectory in the window that matches the off-rails signature: how
    many, which users, which are still running. Exit 0 when the whole window was scanned, 1 when
    part of it could not be (the unscanned part is named), 2 for a bad signature or window."""
    from agentfire import blast as core
    from agentfire.errors import UsageError

    st = state(ctx)
    as_json = want_json(ctx, json_out)
    sig = core.from_flags(tool=tool, then=then, args=arg, output_matches=output_matches, level=level,
                          model=model, metadata=metadata)
    given = [n for n, v in (("flags", sig), ("--signature", signature_file), ("--like", like)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"give the signature one way, not {' and '.join(given)}")
    if signature_file is not None:
        sig = core.load_file(signature_file)
    if like is not None:
        sig = _derive_like(st.runbook(), like, quiet=as_json)
    if sig is None:
        raise UsageError("no signature: give --tool NAME (with --arg ...), --signature FILE.yaml or --like TRACE_ID")
    if emit_sql is not None and emit_sql not in ("clickhouse", "duckdb"):
        raise UsageError(f"--emit-sql {emit_sql!r}: use clickhouse or duckdb")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"--out {out}: use a .csv or .json file name")

    if like is None and emit_sql is None:
        # the scan reads the runbook's fields only (traces, regions, paths; --like's triage reads
        # policies' labels): no pydantic when these bytes validated before (agentfire.runbook)
        st.runbook(validated_before=True)
    journal = None
    incident_start = None
    if st.incident and emit_sql is None:
        journal = st.journal(create=False)
        incident_start = journal.started_at()
    window = core.resolve(since=since, from_=from_, to=to, incident_start=incident_start)

    if emit_sql is not None:
        from agentfire.blast.sql import emit_query

        typer.echo(emit_query(sig, emit_sql, window.start, window.end, source=export_source))
        return

    rb = st.runbook()
    if not as_json:
        err_console().print(Text.assemble(("signature: ", "bold"), safe_text(sig.describe(), 500)))
    result = _scan(rb, sig, window, show_progress=not as_json)
    if out is not None:
        core.write_out(result, out)
    if journal is not None:
        journal.append("blast", actor=st.actor, outcome="complete" if result.complete else "partial",
                       out=str(out) if out else None, **core.journal_fields(result))

    ks = _killswitch_status(rb) if result.still_open_ids else None
    if as_json:
        # streamed: the hits go out one per line, never one document of every hit in memory
        result.write_json(sys.stdout.write, {"kill_switch": ks} if ks is not None else None,
                          indent=2 if sys.stdout.isatty() else None)
        sys.stdout.flush()
    else:
        from agentfire.links import linker

        _render(result, out, linker(rb))
    _loud_warnings(result, ks, as_json)
    if not as_json:
        _window_hints(rb, sig, result)
    if not result.complete:
        parts = "; ".join(f"{g.start:%Y-%m-%d %H:%M:%S}Z..{g.end:%Y-%m-%d %H:%M:%S}Z ({g.reason})"
                          for g in result.gaps)
        raise fail(f"the scan did not complete; NOT scanned: {parts}. The counts above are a lower bound.", 1)
    if not as_json:
        follow: list[Any] = []
        if out is None and result.hits:
            follow.append((command_for(ctx, *same_command(ctx, "blast", add=["--out", "affected.csv"])),
                           "every hit and user, for legal and support"))
        if like is not None:
            from agentfire.blast.like import parse_like

            trace_id, step = parse_like(like)
            follow.append((command_for(ctx, "capture", _q(trace_id), *(["--step", str(step)] if step else [])),
                           "minute five: the failing input into the eval set"))
        next_steps(*follow)


def _q(value: Any) -> str:
    from agentfire.cli._output import quote

    return quote(value)


def _window_hints(rb: Any, sig: Any, result: Any) -> None:
    """A --tool never seen in the window says so (with the tools seen); a first hit near the
    window's start says the window may be too short."""
    w = result.window
    first = result.first_hit
    if first is not None and w.end > w.start:
        span = (w.end - w.start).total_seconds()
        lead = (first - w.start).total_seconds()
        # near: within a tenth of the window, or within the hits' own average spacing (had the
        # incident started at the window's edge, a gap that short before the first hit is unlikely)
        n = len(result.hits)
        gap = ((result.last_hit - first).total_seconds() / (n - 1)) if n > 1 and result.last_hit else 0
        if lead < max(0.1 * span, 2 * gap):
            warn(f"the first hit is {int(lead // 60)} min after the window's start ({w.start:%Y-%m-%d %H:%M}Z): "
                 "the incident may have started earlier; widen the window (--since) to see its start")
    if result.hits or not result.complete:
        return
    import fnmatch

    wanted = [p.tool for p in sig.steps if p.tool]
    if not wanted:
        return
    from agentfire.tracelist import tools_seen

    try:
        seen, whole = tools_seen(rb, w.start, w.end)
    except Exception:  # a hint: never fails the blast
        return
    for name in wanted:
        if not any(fnmatch.fnmatchcase(t, name) for t in seen):
            sample = "" if whole else " (in the newest trajectories read)"
            warn(f"no trajectory in the window called a tool named {name!r}; tools seen{sample}: "
                 + (", ".join(seen) if seen else "none"))


def _derive_like(rb: Any, like: str, *, quiet: bool) -> Any:
    from agentfire import triage
    from agentfire.blast.like import derive, parse_like

    trace_id, step = parse_like(like)
    sig, index = derive(triage.run(rb, trace_id), step)
    if not quiet:
        err_console().print(Text(f"signature derived from step {index} of {trace_id} "
                                 "(edit it, save it, pass it back with --signature FILE.yaml):", style="bold"))
        err_console().print(safe_text(sig.to_yaml().rstrip(), None))
    return sig


def _scan(rb: Any, sig: Any, window: Any, *, show_progress: bool) -> Any:
    from agentfire import blast as core

    if not show_progress:  # --json: no progress bar, and no Rich console to decide that
        return core.run(rb, sig, window)
    console = err_console()
    if not console.is_terminal:
        return core.run(rb, sig, window)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("scanning"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                        console=console, transient=True)
    task = progress.add_task("scan", total=1.0, detail="")

    def hook(ev: dict[str, Any]) -> None:
        detail = []
        if "pages" in ev:
            detail.append(f"pages {ev['pages']}")
        if "hits" in ev:
            detail.append(f"hits {ev['hits']}")
        if ev.get("covered_to") is not None:
            detail.append(f"covered to {ev['covered_to']:%H:%M:%S}Z")
        progress.update(task, completed=ev.get("fraction", 0.0), detail="  ".join(detail))

    with progress:
        return core.run(rb, sig, window, hook=hook)


def _killswitch_status(rb: Any) -> list[dict[str, Any]]:
    from agentfire import killswitch

    try:
        rows = killswitch.status(rb)
    except Exception as exc:  # the warning must still be shown
        return [{"region": "?", "on": None, "detail": f"could not read the kill switch: {exc}"}]
    return [{"region": r.region, "provider": r.provider, "on": r.on, "detail": r.detail} for r in rows]


def _render(result: Any, out: Optional[Path], link: Any = None) -> None:
    from agentfire.trajectory import iso

    s = result.summary_json()
    table = Table(title=f"blast radius  ({result.store})", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    w = result.window
    rows = [
        ("trajectories", str(s["trajectories"])),
        ("distinct users", str(s["distinct_users"])),
        ("still open", f"{s['still_open_count']} " + ("YES" if s["still_open"] else "(none)")),
        ("first hit", s["first_hit"] or "-"),
        ("last hit", s["last_hit"] or "-"),
        ("window", f"{iso(w.start)} .. {iso(w.end)}  ({w.origin})"),
        ("scanned", "the whole window" if result.complete else "PARTIAL (see below)"),
        ("scan", f"{result.stats.engine}  {result.stats.seconds:.1f} s"
                 + (f"  {result.stats.requests} requests" if result.stats.requests else "")),
    ]
    for k, v in rows:
        table.add_row(Text(k), safe_text(v, 300))
    print_table(table)
    if result.hits:
        hits = Table(title=f"first {min(FIRST_ROWS, len(result.hits))} of {len(result.hits)} hits"
                     + ("" if out else "  (--out FILE.csv for all, --json for everything)"),
                     title_justify="left")
        shown = result.hits[:FIRST_ROWS]
        urls = [link(h.trace_id) if link else None for h in result.hits[:FIRST_ROWS]]
        for col in ("trace", "user", "status", "step", "tool", "arguments", "hit at (UTC)", "link"):
            if col == "link":
                if any(urls):
                    optional_column(hits, col, drop=3, no_wrap=True, overflow="ignore")
                continue
            if col == "arguments":
                optional_column(hits, col, drop=1, overflow="ellipsis", no_wrap=True)
            elif col == "hit at (UTC)":
                optional_column(hits, col, drop=2)
            elif col in ("trace", "user"):
                id_column(hits, col)  # identifiers are shown whole, never folded
            else:
                hits.add_column(col)
        for h, u in zip(shown, urls):
            hits.add_row(safe_text(h.trace_id, 80), safe_text(h.user_id or "-", 80),
                         Text(h.status.upper() if h.still_open else h.status,
                              style="bold red" if h.still_open else ""),
                         Text(str(h.step_index or "?")), safe_text(h.tool or "-", 80),
                         safe_text(_short_args(h.args), None),
                         Text(f"{h.hit_at:%m-%d %H:%M:%S}" if h.hit_at else "-"),
                         *([Text(u or "-", style=f"link {u}" if u else "")] if any(urls) else []))
        print_table(hits)
    if out is not None:
        err_console().print(Text(f"wrote {len(result.hits)} hits to {out} (mode 0600)"))


def _short_args(args: Any, limit: int = 36) -> str:
    import json

    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loud_warnings(result: Any, ks: Optional[list[dict[str, Any]]], as_json: bool) -> None:
    for w in result.warnings:
        warn(w)
    if result.still_open_ids:
        all_off = ks is not None and all(r["on"] is False for r in ks)
        # the runbook's rule: still spreading -> minute one. If the switch already reads off
        # everywhere, the person needs to know whether the agent honours it, not to re-kill.
        then = ("The kill switch reads off in every region: check that these stop at their next "
                "step (agents poll the flag); if they do not, the agent is not honouring it."
                if all_off else "Go back to minute one: agentfire kill --region all")
        loud = f"STILL OPEN: {len(result.still_open_ids)} matching trajectories are still running. {then}"
        err_line(lambda: Text(loud, style="bold red reverse"), loud)  # piped: written without Rich
        if ks is not None and not as_json:
            table = Table(title="kill switch, live", title_justify="left")
            for col in ("region", "agent", "detail"):
                table.add_column(col)
            for r in ks:
                label, style = {True: ("ON", "bold red"), False: ("off", "green"),
                                None: ("UNKNOWN", "bold red")}[r["on"]]
                table.add_row(Text(r["region"]), Text(label, style=style), safe_text(r["detail"], 200))
            print_table(table, err_console())
    if result.customer_comms:
        warn(f"{len(result.user_ids)} distinct users are affected: this is now a customer-communications "
             "problem too (support, legal, status page). --out FILE.csv gives the list.")
