"""The dataset's rows: read from each file's entry (at most ``ROWS`` in all), checked
(chat: the messages; causal-lm: the text column), rendered and counted in tokens.

A row is an error when it is not a JSON object, lacks the column, or (chat) its messages
are malformed; a row over ``max_length`` tokens is a warning. Runs in the child process.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from services.fetcher.preflight.limits import MAX_FILE_BYTES, MAX_ISSUES, ROWS
from services.fetcher.preflight.tokenizer import Tokenizer
from shared.events import PreflightIssue
from shared.spec import ProjectSpec

__all__ = ["Report", "check_messages", "scan"]

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass
class Report:
    """What the scan found: counts, token counts per row, the first issues, notes."""

    rows: int = 0
    errors: int = 0
    tokens: list[int] = field(default_factory=list)
    over: int = 0
    issues: list[PreflightIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total: int | None = 0

    def flag(self, file: str, row: int, problem: str, severity: str = "error") -> None:
        if severity == "error":
            self.errors += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(
                PreflightIssue(file=file, row=row, problem=problem[:300], severity=severity)  # type: ignore[arg-type]
            )


def check_messages(messages: Any) -> tuple[list[dict[str, str]] | None, str | None]:
    """(clean messages, None) or (None, what is wrong)."""
    if not isinstance(messages, list) or not messages:
        return None, "messages is not a non-empty list"
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return None, f"message {i} is not an object with role and content"
        role, content = m["role"], m["content"]
        if role not in _ROLES:
            return None, f"message {i} has unknown role {str(role)[:40]!r}"
        if not isinstance(content, str) or not content.strip():
            return None, f"message {i} ({role}) has empty content"
        clean.append({"role": role, "content": content})
    turns = [m["role"] for m in clean if m["role"] in ("user", "assistant")]
    if not turns:
        return None, "no user or assistant message"
    if turns[0] != "user":
        return None, "the first turn after system messages is not from the user"
    for a, b in zip(turns, turns[1:], strict=False):
        if a == b:
            return None, f"roles not alternating: {a} then {b}"
    if "assistant" not in turns:
        return None, "no assistant reply to learn from"
    return clean, None


def _rows(entry: dict[str, Any], report: Report) -> Iterator[tuple[int, Any]]:
    """(row number, parsed row or an exception) of a data file, the first ROWS at most."""
    path = str(entry["path"])
    suffix = PurePosixPath(path).suffix.lower()
    if entry.get("skipped"):
        report.notes.append(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, not checked")
        report.total = None
        return
    if suffix == ".jsonl":
        for n, line in enumerate(entry["lines"], 1):
            if report.rows >= ROWS:
                break
            try:
                yield n, json.loads(line)
            except ValueError as exc:
                yield n, exc
        if report.total is not None:
            report.total += int(entry["total"])
        return
    data: bytes = entry["data"]
    rows: list[Any]
    if suffix == ".json":
        try:
            value = json.loads(data)
        except ValueError as exc:
            yield 1, exc
            return
        rows = value if isinstance(value, list) else value.get("data", [])
        if not isinstance(rows, list):
            rows = []
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(data)).slice(0, ROWS).to_pylist()
        report.total = (
            None
            if report.total is None
            else report.total + pq.ParquetFile(io.BytesIO(data)).metadata.num_rows - len(rows)
        )
    elif suffix in (".csv", ".tsv"):
        import csv

        text = io.StringIO(data.decode("utf-8", "replace"))
        rows = list(csv.DictReader(text, delimiter="\t" if suffix == ".tsv" else ","))
    else:  # .txt: one text a line
        rows = [
            {"text": line} for line in data.decode("utf-8", "replace").splitlines() if line.strip()
        ]
    if report.total is not None:
        report.total += len(rows)
    for n, row in enumerate(rows[: max(0, ROWS - report.rows)], 1):
        yield n, row


def scan(spec: ProjectSpec, entries: list[dict[str, Any]], tok: Tokenizer) -> Report:
    """Check, render and count every row the entries hold (see module docstring)."""
    report = Report()
    args = spec.train.args
    chat = spec.task == "chat"
    column = str(args.get("messages_column") or "messages") if chat else None
    text_column = str(args.get("text_column") or "text")
    max_length = int(args.get("max_length") or 128) if chat else None
    if not entries:
        kinds = "JSONL, JSON or Parquet" if chat else "JSONL, JSON, Parquet, CSV, TSV or .txt"
        report.flag("(dataset)", 0, f"no {kinds} file in the dataset")
        return report
    for entry in entries:
        path = str(entry["path"])
        for n, row in _rows(entry, report):
            report.rows += 1
            if isinstance(row, Exception):
                report.flag(path, n, f"not valid JSON ({str(row)[:80]})")
                continue
            if not isinstance(row, dict):
                report.flag(path, n, "not a JSON object")
                continue
            if column is not None:
                if column not in row:
                    report.flag(path, n, f"missing column {column!r}")
                    continue
                messages, problem = check_messages(row[column])
                if messages is None:
                    report.flag(path, n, problem or "malformed")
                    continue
                try:
                    text = tok.render(messages)
                except Exception as exc:  # the template refused the row (raise_exception)
                    report.flag(path, n, f"the chat template failed: {str(exc)[:120]}")
                    continue
            else:
                value = row.get(text_column)
                if value is None or not str(value).strip():
                    report.flag(path, n, f"missing or empty column {text_column!r}")
                    continue
                text = str(value)
            count = tok.count(text)
            report.tokens.append(count)
            if max_length is not None and count > max_length:
                report.over += 1
                report.flag(
                    path,
                    n,
                    f"{count} tokens, over max_length {max_length}: truncated",
                    severity="warning",
                )
    return report
