"""Strings from users and runs, made safe to print on a terminal.

Log lines, failure reasons and names come from training scripts and other users: they may
hold Rich markup (``[/INST]`` in every Llama chat log, ``[/bold]``), which must print
literally, and terminal escape sequences (colours, cursor moves, OSC 8 hyperlinks, window
titles), which must never reach the user's terminal. :func:`printable` removes escape
sequences and control characters; :func:`plain` wraps the result in a Rich ``Text`` so no
markup is parsed and nothing is highlighted.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["plain", "printable"]

# ESC [ ... final (CSI), ESC ] ... BEL or ESC \ (OSC: hyperlinks, titles), ESC P/X/^/_ ... ST
# (DCS, SOS, PM, APC), two-byte ESC sequences, and the 8-bit C1 forms of CSI and OSC.
_ESCAPES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?
  | (?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?
  | \x1b[ -/]*[0-~]?
    """,
    re.VERBOSE,
)
# every other C0 and C1 control character but tab; DEL; bidi overrides that reorder text
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """``value`` as one line of text without escape sequences or control characters."""
    text = str(value)
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub("", text.replace("\r\n", " ").replace("\n", " "))


def plain(value: object, style: str = "") -> Text:
    """A Rich Text of :func:`printable` (``value``): never parsed as markup."""
    return Text(printable(value), style=style)
