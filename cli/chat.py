"""``aidp chat DEPLOYMENT``: talk to an LLM deployment through its OpenAI-compatible API.

Interactive: each line read from stdin is a user turn; the reply streams to stdout token by
token and joins the conversation (``/reset`` forgets it, ``/exit`` or end of input quits).
``--message/-m`` sends one message, prints the reply and exits. The model's text comes from
a model a user trained: escape sequences and control characters are removed before it
reaches the terminal (newlines and tabs stay).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli.output import EXIT_USAGE, err_console, fail, handle_errors
from cli.resolve import resolve_deployment
from cli.sdk import Client
from cli.text import printable

__all__ = ["chat"]


def _safe(piece: str) -> str:
    """``piece`` without escape sequences or control characters, newlines kept."""
    return "\n".join(printable(line) for line in piece.split("\n"))


def _reply(
    client: Client, deployment_id: str, messages: list[dict[str, Any]], **params: Any
) -> str:
    """Stream one reply to stdout; returns its text."""
    parts: list[str] = []
    for piece in client.chat_stream(deployment_id, messages, **params):
        parts.append(piece)
        sys.stdout.write(_safe(piece))
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


@handle_errors
def chat(
    deployment_id: Annotated[
        str, typer.Argument(metavar="DEPLOYMENT", help="A deployment id (or a unique prefix).")
    ],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message, print the reply.")
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="A system prompt for the conversation.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="At most this many tokens per reply.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, max=2.0, help="Sampling temperature (0: greedy).")
    ] = None,
) -> None:
    """Chat with a deployed language model (task causal-lm or chat), replies streamed."""
    client = Client.from_config()
    deployment_id = resolve_deployment(client, deployment_id)  # a unique prefix will do
    model = client.chat_model(deployment_id)
    params = {"model": model, "max_tokens": max_tokens, "temperature": temperature}
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if message is not None:
        if not message.strip():
            raise fail("--message is empty", EXIT_USAGE)
        _reply(client, deployment_id, [*history, {"role": "user", "content": message}], **params)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        err_console.print(
            f"chatting with {model} — /reset forgets the conversation, /exit or Ctrl-D quits",
            highlight=False,
            markup=False,
        )
    while True:
        if interactive:
            err_console.print("you> ", end="", highlight=False, markup=False)
        line = sys.stdin.readline()
        if not line:  # end of input
            return
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() == "/exit":
            return
        if text.strip() == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": text})
        answer = _reply(client, deployment_id, history, **params)
        history.append({"role": "assistant", "content": answer})
