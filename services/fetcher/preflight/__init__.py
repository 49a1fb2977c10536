"""Pre-flight check of an LLM task's data (``chat``, ``causal-lm``), before any compute.

Runs in the fetcher right after both artifacts are cached, on their encrypted files read
from the store into memory (no plaintext on disk): the first :data:`ROWS` rows of the
dataset are parsed, rendered with the model's own chat template (jinja2's sandbox, as
transformers renders it) and tokenized with the model's ``tokenizer.json`` (the Rust
``tokenizers`` library; nothing of the model is executed). Template, tokenizer and rows come
from a hub, so the parsing and rendering run in a child process (``python -I -m
services.fetcher.preflight``: an empty environment, no secrets, a memory limit and
:data:`TIMEOUT` seconds); the fetcher only decrypts the inputs and hands them over on stdin.
A check that cannot finish (a template that loops, a crash) passes with a note.

Modules: :mod:`.inputs` (the fetcher decrypts what the check reads), :mod:`.runner`
(:func:`check_artifacts`: the child process and its answer), ``__main__`` (the child),
:mod:`.wire` (the inputs on its stdin), :mod:`.evaluate` (the check: :mod:`.tokenizer`,
:mod:`.rows`, :mod:`.estimate`), :mod:`.limits` (its bounds).

A row is an **error** (the check fails with ``ValidationFailed``, the run ends and nothing is
provisioned) when it is not a JSON object, lacks the column, or — for chat — its
``messages`` are not a non-empty list of ``{role, content}`` with known roles, non-empty
content, and user/assistant turns alternating (after optional system messages). A row
over ``max_length`` tokens is a **warning** (it will be truncated). Rows are numbered from
1 per file (JSONL: non-blank lines). The report also counts tokens, picks the training
method (the spec's, else from the model's parameter count) and estimates steps and time.
"""

from __future__ import annotations

from services.fetcher.preflight.estimate import estimate_params
from services.fetcher.preflight.evaluate import evaluate
from services.fetcher.preflight.inputs import collect_inputs
from services.fetcher.preflight.limits import ROWS, TIMEOUT
from services.fetcher.preflight.runner import check_artifacts

__all__ = ["ROWS", "TIMEOUT", "check_artifacts", "collect_inputs", "estimate_params", "evaluate"]
