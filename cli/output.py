"""Printing for the CLI: tables for people, JSON for scripts, errors to stderr."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.sdk import AidpError, ApiError, NotLoggedIn, ServerUnreachable, StreamClosed
from cli.specfile import SpecError
from cli.text import plain

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "JsonOpt",
    "WideOpt",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "print_json",
    "print_table",
    "short_time",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: The ``--json`` flag of listing commands.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
#: The ``--wide`` flag of listing commands: whole ids (tables shorten them to a unique prefix).
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Print whole ids.")]

console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    err_console.print(Text("error:", style="bold red") + " " + plain(message), highlight=False)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn SDK and spec errors into one readable line and the docs/design.md §7 exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except NotLoggedIn as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except ApiError as exc:
            code = EXIT_USAGE if exc.status in (400, 422) else EXIT_FAILED
            raise fail(str(exc), code) from None
        except (ServerUnreachable, StreamClosed, AidpError) as exc:
            raise fail(str(exc), EXIT_FAILED) from None

    return wrapper


def print_json(data: Any) -> None:
    """JSON on stdout, unstyled (for ``--json`` and pipes)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def short_time(value: Any) -> str:
    """'2024-05-01 12:03:04' from an ISO timestamp; '' for None."""
    if not value:
        return ""
    text = str(value).replace("T", " ")
    return text.split(".")[0].removesuffix("Z").split("+")[0]


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    empty: str = "nothing yet",
    wide: bool = False,
) -> None:
    """A table of ``rows`` with ``columns`` as (header, key); dotted keys reach inside.

    Id columns (``id``, ``*_id``) show the shortest prefix that tells the rows apart (any
    command takes it: cli/resolve.py); ``wide`` prints them whole, never cut."""
    if not rows:
        console.print(f"[dim]{empty}[/]")
        return
    from cli.resolve import short_ids

    ids = [k for _, k in columns if k == "id" or k.endswith("_id")]
    widths = {k: short_ids(_get(r, k) for r in rows) for k in ids}
    table = Table(show_edge=False, header_style="bold")
    for header, key in columns:
        if key in widths:
            table.add_column(header, no_wrap=True, overflow="fold" if wide else "ellipsis")
        else:
            table.add_column(header)
    for row in rows:
        cells = []
        for _, key in columns:
            value = _cell(_get(row, key))
            if key in widths and not wide:
                value = value[: widths[key]]
            cells.append(plain(value))
        table.add_row(*cells)
    console.print(table)


def _get(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    text = str(value)
    return short_time(text) if len(text) >= 19 and text[4:5] == "-" and text[10:11] == "T" else text
