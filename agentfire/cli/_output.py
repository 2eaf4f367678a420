"""How tables, follow-up commands and links reach a person or a pipe (issue 14).

- On a terminal: a Rich table. Identifier columns (made with `id_column`) are never cut or folded:
  when the table cannot fit the terminal with every identifier whole, it is shown as records (one
  `field  value` block per row) instead, the narrow layout. `--wide` prints the full table at its
  natural width and lets the terminal wrap the lines.
- Piped (stdout not a terminal) and no --json: plain tab-separated rows, no title, header, box
  drawing or padding (as gh does), so `| grep | cut -f1` works. Line breaks and tabs inside a value
  become spaces. AGENTFIRE_FORCE_TTY=1 keeps the terminal layout in a pipe.
- `next_steps`: the follow-up commands after an action, one `next:` line each, on stderr.
- `link_text`: a trace id with its UI link (Langfuse, Phoenix) when the store's UI is known.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterable

from agentfire.cli._lazyrich import Table, Text

if TYPE_CHECKING:
    from rich.console import Console

# set by the global --wide option
WIDE = False
_ID_ATTR = "_agentfire_id"
_OPTIONAL_ATTR = "_agentfire_optional"
NARROW_BELOW = 100  # columns: below this, a wide table turns into records sooner
_MIN_FREE = 8  # the least a free-text column should get before we prefer records


def is_plain() -> bool:
    """stdout is a pipe or a file: tab-separated rows, not a Rich table. AGENTFIRE_FORCE_TTY=1
    keeps the terminal layout when piped (like gh's GH_FORCE_TTY: `| less -R`, `script`)."""
    if os.environ.get("AGENTFIRE_FORCE_TTY", "") not in ("", "0"):
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


def id_column(table: Table, header: str, **kw: Any) -> None:
    """A column of identifiers (trace, incident, case, user ids): never truncated or folded."""
    kw.setdefault("no_wrap", True)
    kw.setdefault("overflow", "ignore")
    table.add_column(header, **kw)
    setattr(table.columns[-1], _ID_ATTR, True)


def optional_column(table: Table, header: str, drop: int = 1, **kw: Any) -> None:
    """A column that the narrow layout may leave out (lowest `drop` first) so the identifiers fit;
    --wide, --json and the piped rows always have it."""
    table.add_column(header, **kw)
    setattr(table.columns[-1], _OPTIONAL_ATTR, drop)


def cell_text(cell: Any) -> str:
    """A cell as one line of plain text."""
    if isinstance(cell, Text):
        s = cell.plain
    elif isinstance(cell, str):
        s = Text.from_markup(cell).plain if "[" in cell else cell
    elif cell is None:
        s = ""
    else:
        plain = getattr(cell, "plain", None)
        s = plain if isinstance(plain, str) else str(cell)
    return _flat(s)


def _flat(s: str) -> str:
    return " ".join(s.replace("\t", " ").replace("\r", " ").split("\n")).strip()


def rows_of(table: Table) -> list[list[Any]]:
    cols = [list(c.cells) for c in table.columns]
    n = max((len(c) for c in cols), default=0)
    return [[c[i] if i < len(c) else "" for c in cols] for i in range(n)]


def tsv_lines(table: Table) -> list[str]:
    return ["\t".join(cell_text(c) for c in row) for row in rows_of(table)]


def write_rows(rows: list[list[str]]) -> None:
    """The piped rows of a table whose cells are plain strings, written without Rich: what
    print_table writes for a table of `Text(cell)` cells when stdout is plain (is_plain)."""
    from agentfire.cli._app import _RICH_STRIPS

    if rows:
        sys.stdout.write("\n".join("\t".join(_flat(c.translate(_RICH_STRIPS)) for c in row)
                                   for row in rows) + "\n")
        sys.stdout.flush()


def _needed_width(table: Table, console: Console) -> int:
    """The width a table needs with every identifier and no_wrap column whole and every other
    column at least a few characters wide."""
    from rich.measure import Measurement

    need = 0
    for col in table.columns:
        cells = list(col.cells) + ([col.header] if table.show_header else [])
        widest = max((Measurement.get(console, console.options, c).maximum for c in cells), default=0)
        if getattr(col, _ID_ATTR, False) or col.no_wrap:
            need += widest
        else:
            need += min(widest, _MIN_FREE)
    n = len(table.columns)
    pad = table.padding[1] + table.padding[3] if len(table.padding) == 4 else 2
    need += n * pad
    if table.box is not None:
        vertical = table.box.head_vertical.strip() != ""
        if vertical:
            need += n + 1 if table.show_edge else n - 1
    if not table.show_edge and table.box is not None:
        need -= 0 if table.pad_edge else 2
    return need


def _records(table: Table, console: Console) -> None:
    """The narrow layout: one block of `field  value` lines per row, identifiers whole."""
    if table.title:
        console.print(table.title if isinstance(table.title, Text) else Text(str(table.title)),
                      style="bold")
    if not table.show_header:  # already one row per field: a grid whose last column wraps
        grid = Table.grid(padding=(0, 2))
        for i, col in enumerate(table.columns):
            last = i == len(table.columns) - 1
            grid.add_column(no_wrap=not last or getattr(col, _ID_ATTR, False),
                            overflow="fold" if last else "ignore", style="bold" if i == 0 else "")
        for row in rows_of(table):
            grid.add_row(*(_whole(c, col) for c, col in zip(row, table.columns)))
        console.print(grid)
        return
    headers = [cell_text(c.header) or f"#{i + 1}" for i, c in enumerate(table.columns)]
    for row in rows_of(table):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for head, col, cell in zip(headers, table.columns, row):
            grid.add_row(Text(head), _whole(cell, col))
        console.print(grid)
        console.print()


def _whole(cell: Any, col: Any) -> Any:
    value = cell if isinstance(cell, Text) else Text(cell_text(cell))
    if getattr(col, _ID_ATTR, False):
        value = value.copy()
        value.no_wrap = True
        value.overflow = "ignore"
    return value


def print_table(table: Table, console: Console | None = None) -> None:
    """A table to stdout (or `console`): Rich on a terminal, tab-separated when piped."""
    from agentfire.cli._app import out_console

    console = console or out_console()
    to_stdout = console.file is sys.stdout
    if to_stdout and is_plain():
        lines = tsv_lines(table)
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        return
    if WIDE:
        from rich.measure import Measurement

        natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
        saved = console._width  # Console.print(width=) cannot go past the terminal's width
        console.width = max(natural, console.width)
        try:
            console.print(table, crop=False)
        finally:
            console._width = saved
        return
    width = console.width
    if _needed_width(table, console) > width or (width < NARROW_BELOW and table.box is not None
                                                 and len(table.columns) > 4):
        table = _narrow(table, console, width)
        if table is None:
            return
    console.print(table)


def _narrow(table: Table, console: Console, width: int) -> Table | None:
    """The narrow layout: no vertical rules, then without the optional columns, then records.
    Returns the table to print, or None when it was printed as records."""
    from rich import box

    if table.box is not None:
        table.box = box.SIMPLE_HEAD
        table.show_edge = False
    optional = sorted((c for c in table.columns if getattr(c, _OPTIONAL_ATTR, None) is not None),
                      key=lambda c: getattr(c, _OPTIONAL_ATTR))
    while _needed_width(table, console) > width and optional:
        table.columns.remove(optional.pop(0))
    if _needed_width(table, console) > width:
        _records(table, console)
        return None
    return table


def next_steps(*commands: str | tuple[str, str] | None, console: Console | None = None) -> None:
    """`next: COMMAND` lines on stderr (each command whole on one line, copy-pasteable), with an
    optional note after two spaces and a '#': what to run after this action."""
    from agentfire.cli._app import err_console, err_line

    for c in commands:
        if not c:
            continue
        cmd, note = (c, "") if isinstance(c, str) else c

        def line(cmd: str = cmd, note: str = note) -> Any:
            t = Text.assemble(("next: ", "bold"), (cmd, "cyan"))
            if note:
                t.append(f"   # {note}", style="dim")
            return t

        if console is None:  # stderr: written directly when plain (err_line)
            err_line(line, f"next: {cmd}" + (f"   # {note}" if note else ""))
        else:
            console.print(line(), soft_wrap=True)


def command_for(ctx: Any, *parts: str) -> str:
    """`agentfire [--config C] [--incident I] PARTS...` for a `next:` line: the global options
    this run used that the environment would not supply again."""
    from agentfire.cli._app import state

    st = state(ctx)
    head = ["agentfire"]
    if st.config and os.environ.get("AGENTFIRE_CONFIG") != st.config:
        head += ["--config", quote(st.config)]
    if st.incident and os.environ.get("AGENTFIRE_INCIDENT") != st.incident:
        head += ["--incident", quote(st.incident)]
    return " ".join([*head, *parts])


def same_command(ctx: Any, name: str, *, drop: Iterable[str] = (), add: Iterable[str] = ()) -> list[str]:
    """This command's own options as given (quoted), without `drop` (parameter names), plus `add`:
    to repeat it with one thing changed (blast ... --out FILE)."""
    dropped = set(drop) | {"json_out"}
    parts = [name]
    for p in ctx.command.params:
        if p.name in dropped or getattr(p, "param_type_name", "") != "option":
            continue
        value = ctx.params.get(p.name)
        if value is None or value is False or value == () or value == [] or value == p.default:
            continue
        flag = p.opts[0]
        if value is True:
            parts.append(flag)
            continue
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            parts += [flag, quote(v)]
    return [*parts, *add]

def agentfire_cmd(*parts: str, incident: str | None = None) -> str:
    """A copy-pasteable agentfire command line (values quoted; the incident passed along)."""
    import shlex

    head = ["agentfire"] + (["--incident", incident] if incident else [])
    return " ".join([*(shlex.quote(h) for h in head), *parts])


def quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


def link_text(trace_id: str, url: str | None, *, style: str = "") -> Text:
    """The trace id whole, then its UI link (a terminal hyperlink too) when there is one."""
    from agentfire.textsafe import safe

    t = Text(safe(trace_id, 200), style=style)
    if url:
        t.append("  ")
        t.append(url, style=f"link {url}" if not is_plain() else "")
    return t


def iter_ids(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values if v]


__all__ = ["WIDE", "is_plain", "id_column", "optional_column", "print_table", "tsv_lines", "next_steps",
           "agentfire_cmd", "quote", "link_text", "cell_text"]
