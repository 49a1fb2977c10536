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

console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    err_console.print(Text("error:", style="bold red") + " " + plain(message), highlight=False)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn SDK and spec errors into one readable line and the DESIGN §7 exit code."""

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
) -> None:
    """A table of ``rows`` with ``columns`` as (header, key); dotted keys reach inside."""
    if not rows:
        console.print(f"[dim]{empty}[/]")
        return
    table = Table(show_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(plain(_cell(_get(row, key))) for _, key in columns))
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
