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

A row is an **error** (the check fails with ``ValidationFailed``, the run ends and nothing is
provisioned) when it is not a JSON object, lacks the column, or — for chat — its
``messages`` are not a non-empty list of ``{role, content}`` with known roles, non-empty
content, and user/assistant turns alternating (after optional system messages). A row
over ``max_length`` tokens is a **warning** (it will be truncated). Rows are numbered from
1 per file (JSONL: non-blank lines). The report also counts tokens, picks the training
method (the spec's, else from the model's parameter count) and estimates steps and time.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from shared.events import DatasetValidated, PreflightIssue, ValidationFailed
from shared.spec import ProjectSpec, default_method
from shared.store import ArtifactStore, ManifestFile

__all__ = ["ROWS", "TIMEOUT", "check_artifacts", "collect_inputs", "estimate_params", "evaluate"]

#: Rows read and rendered per check.
ROWS = 2000
#: Issues carried in an event (the counts cover all of them).
MAX_ISSUES = 50
#: Largest dataset file (not JSONL) read for the check; bigger ones are not checked.
_MAX_FILE_BYTES = 64 * 1024 * 1024
#: Largest tokenizer/config file handed to the check.
_MAX_MODEL_FILE_BYTES = 64 * 1024 * 1024
#: The model files the check reads.
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
#: Seconds and bytes of address space the check's process may use.
TIMEOUT = 120
_MEMORY = 4 * 1024 * 1024 * 1024
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
#: Sustained training FLOP/s assumed per node for the time estimate (rough).
_FLOPS = {"cpu": 2e11, "cuda": 2e14, "gaudi": 1.5e14, "xpu": 1e14}
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".txt")


@dataclass
class _Report:
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


def estimate_params(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only model from its ``config.json`` (embeddings plus per
    layer attention and MLP); None when the config lacks the sizes."""
    sub = config.get("text_config")
    text: dict[str, Any] = sub if isinstance(sub, dict) else config

    def size(*names: str) -> int:
        for name in names:
            value = text.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return 0

    hidden = size("hidden_size", "n_embd", "d_model")
    layers = size("num_hidden_layers", "n_layer", "num_layers")
    vocab = size("vocab_size")
    if not (hidden and layers and vocab):
        return None
    inner = size("intermediate_size", "n_inner") or 4 * hidden
    heads = size("num_attention_heads") or 1
    kv = size("num_key_value_heads") or heads
    attention = 2 * hidden * hidden + 2 * hidden * (hidden * kv // max(1, heads))
    mlp = (3 if text.get("model_type") not in ("gpt2", "gpt_neox", "opt") else 2) * hidden * inner
    embeddings = vocab * hidden * (1 if text.get("tie_word_embeddings", True) else 2)
    return int(embeddings + layers * (attention + mlp))


def _read(store: ArtifactStore, f: ManifestFile) -> bytes:
    return b"".join(store.read(f.digest))


def _lines(store: ArtifactStore, f: ManifestFile) -> Iterator[bytes]:
    """The file's lines, decrypted chunk by chunk (stops early when the caller does)."""
    rest = b""
    for chunk in store.read(f.digest):
        rest += bytes(chunk)
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


class _Tokenizer:
    """The model's tokenizer.json and chat template, loaded from memory."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.tokenizer: Any = None
        self.template: str | None = None
        self.config: dict[str, Any] = {}
        self.special: dict[str, str] = {}
        if "config.json" in files:
            self.config = _json_or_empty(files["config.json"])
        if "tokenizer.json" in files:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_str(files["tokenizer.json"].decode())
        tok_config: dict[str, Any] = {}
        if "tokenizer_config.json" in files:
            tok_config = _json_or_empty(files["tokenizer_config.json"])
        template = tok_config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not isinstance(template, str) and "chat_template.jinja" in files:
            template = files["chat_template.jinja"].decode("utf-8", "replace")
        self.template = template if isinstance(template, str) and template else None
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = tok_config.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                self.special[name] = value
        self._compiled: Any = None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, len(text) // 4)  # no tokenizer.json: ~4 characters a token
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The conversation through the chat template (jinja2 sandbox, as transformers)."""
        if self.template is None:
            return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        if self._compiled is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ValueError(message)

            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            env.globals["raise_exception"] = raise_exception
            # transformers' {% generation %} marks (assistant masks) change no text
            source = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", self.template)
            self._compiled = env.from_string(source)
        return str(
            self._compiled.render(messages=messages, add_generation_prompt=False, **self.special)
        )


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _check_messages(messages: Any) -> tuple[list[dict[str, str]] | None, str | None]:
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


def _rows(entry: dict[str, Any], report: _Report) -> Iterator[tuple[int, Any]]:
    """(row number, parsed row or an exception) of a data file, the first ROWS at most."""
    path = str(entry["path"])
    suffix = PurePosixPath(path).suffix.lower()
    if entry.get("skipped"):
        report.notes.append(f"{path}: larger than {_MAX_FILE_BYTES >> 20} MiB, not checked")
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


def _scan(spec: ProjectSpec, entries: list[dict[str, Any]], tok: _Tokenizer) -> _Report:
    report = _Report()
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
                messages, problem = _check_messages(row[column])
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


def _estimate(
    spec: ProjectSpec, report: _Report, params: int | None, method: str
) -> tuple[int | None, float | None]:
    args = spec.train.args
    rows = report.total if report.total else report.rows
    batch = max(1, int(args.get("batch_size") or 8))
    nodes = spec.resources.nodes
    max_steps = int(args.get("max_steps") or -1)
    if spec.task == "causal-lm":  # blocks of max_length tokens, not rows
        block = max(2, int(args.get("max_length") or 128))
        mean = sum(report.tokens) / max(1, len(report.tokens))
        rows = max(1, int(rows * mean / block))
    steps = (
        max_steps
        if max_steps > 0
        else math.ceil(float(args.get("epochs") or 1) * rows / (batch * nodes))
    )
    if params is None or not report.tokens:
        return steps, None
    mean_tokens = sum(report.tokens) / len(report.tokens)
    if spec.train.args.get("max_length") and spec.task == "chat":
        mean_tokens = min(mean_tokens, float(spec.train.args["max_length"]))
    flops_per_token = (4 if method != "full" else 6) * params  # LoRA: no weight gradients
    flops = _FLOPS.get(spec.resources.accelerator, 2e11) * nodes
    return steps, round(steps * batch * nodes * mean_tokens * flops_per_token / flops, 1)


def _data_files(paths: list[str], chat: bool) -> list[str]:
    """The dataset files the task reads, sorted (hidden folders skipped)."""
    kinds = (".jsonl", ".json", ".parquet") if chat else _DATA_SUFFIXES
    return sorted(
        p
        for p in paths
        if PurePosixPath(p).suffix.lower() in kinds
        and not any(part.startswith(".") for part in PurePosixPath(p).parts)
    )


def collect_inputs(
    store: ArtifactStore, spec: ProjectSpec, *, model_key: str, dataset_key: str
) -> dict[str, Any]:
    """Decrypt what the check reads (the fetcher's side): the model's tokenizer and config
    files, each data file's first ROWS lines (JSONL, with its row count) or its bytes."""
    model = {f.path: f for f in store.get_manifest(model_key).files}
    files = {
        name: _read(store, model[name])
        for name in _MODEL_FILES
        if name in model and model[name].size <= _MAX_MODEL_FILE_BYTES
    }
    dataset = {f.path: f for f in store.get_manifest(dataset_key).files}
    entries: list[dict[str, Any]] = []
    budget = ROWS
    for path in _data_files(list(dataset), spec.task == "chat"):
        f = dataset[path]
        if path.lower().endswith(".jsonl"):
            lines: list[bytes] = []
            total = 0
            for line in _lines(store, f):
                if line.strip():
                    total += 1
                    if len(lines) < budget:
                        lines.append(line)
            budget -= len(lines)
            entries.append({"path": path, "lines": lines, "total": total})
        elif f.size > _MAX_FILE_BYTES:
            entries.append({"path": path, "skipped": True})
        else:
            entries.append({"path": path, "data": _read(store, f)})
    return {"model": files, "data": entries}


def evaluate(spec: ProjectSpec, inputs: dict[str, Any]) -> DatasetValidated | ValidationFailed:
    """The check itself, on :func:`collect_inputs`'s result (runs in the child process)."""
    tok = _Tokenizer(inputs["model"])
    report = _scan(spec, inputs["data"], tok)
    if spec.task == "chat" and tok.template is None:
        report.flag("tokenizer_config.json", 0, "the model has no chat template: use causal-lm")
    if tok.tokenizer is None:
        report.notes.append("the model has no tokenizer.json: tokens estimated as characters/4")
    if report.errors:
        first = next(i for i in report.issues if i.severity == "error")
        where = f"row {first.row} of {first.file}" if first.row else first.file
        return ValidationFailed(
            task=spec.task,
            reason=f"{report.errors} of {report.rows} checked rows are malformed"
            f" ({where}: {first.problem})",
            rows_checked=report.rows,
            error_rows=report.errors,
            issues=[i for i in report.issues if i.severity == "error"],
        )
    params = estimate_params(tok.config)
    method = spec.train.method or default_method(params)
    steps, seconds = _estimate(spec, report, params, method)
    return DatasetValidated(
        task=spec.task,
        rows_checked=report.rows,
        rows_total=report.total or None,
        tokens_mean=round(sum(report.tokens) / len(report.tokens), 1) if report.tokens else None,
        tokens_max=max(report.tokens) if report.tokens else None,
        max_length=int(spec.train.args.get("max_length") or 128),
        over_max_length=report.over,
        method=method,
        model_params=params,
        estimated_steps=steps,
        estimated_seconds=seconds,
        issues=report.issues,
        notes=report.notes,
    )


def _encode(inputs: dict[str, Any]) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "model": {k: b64(v) for k, v in inputs["model"].items()},
        "data": [
            {
                **{k: v for k, v in e.items() if k not in ("lines", "data")},
                **({"lines": [b64(x) for x in e["lines"]]} if "lines" in e else {}),
                **({"data": b64(e["data"])} if "data" in e else {}),
            }
            for e in inputs["data"]
        ],
    }
    return json.dumps(doc).encode()


def _decode(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw)
    model = {k: base64.b64decode(v) for k, v in doc["model"].items()}
    data = []
    for e in doc["data"]:
        if "lines" in e:
            e["lines"] = [base64.b64decode(x) for x in e["lines"]]
        if "data" in e:
            e["data"] = base64.b64decode(e["data"])
        data.append(e)
    return {"model": model, "data": data}


def _limit() -> None:
    """The child's own limits, set before it reads anything (no preexec_fn: the fetcher
    runs checks from worker threads)."""
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY, _MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (TIMEOUT, TIMEOUT))


def check_artifacts(
    store: ArtifactStore,
    spec: ProjectSpec,
    *,
    model_key: str,
    dataset_key: str,
    timeout: float = TIMEOUT,
) -> DatasetValidated | ValidationFailed:
    """Run the check on the cached model and dataset; returns its event. The untrusted
    parts (template, tokenizer, rows) are parsed in a limited child process."""
    inputs = collect_inputs(store, spec, model_key=model_key, dataset_key=dataset_key)
    request = json.dumps({"spec": spec.model_dump(mode="json")}).encode() + b"\n" + _encode(inputs)
    with tempfile.TemporaryDirectory(prefix="aidp-preflight-") as home:
        env = {
            "PATH": os.defpath,
            "HOME": home,
            "LANG": "C.UTF-8",
            "TOKENIZERS_PARALLELISM": "false",
            "RAYON_NUM_THREADS": "1",
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-m", "services.fetcher.preflight"],
                input=request,
                capture_output=True,
                env=env,
                cwd=home,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return _unfinished(spec, f"the check did not finish in {timeout:.0f} s")
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        return _unfinished(spec, f"the check failed ({tail[0][:200]})")
    try:
        out = json.loads(proc.stdout)
        if out.get("type") == "ValidationFailed":
            return ValidationFailed.model_validate(out["payload"])
        return DatasetValidated.model_validate(out["payload"])
    except (ValueError, KeyError, TypeError):
        return _unfinished(spec, "the check's answer was not readable")


def _unfinished(spec: ProjectSpec, why: str) -> DatasetValidated:
    """A check that could not run passes with a note: the run is not lost to it."""
    return DatasetValidated(
        task=spec.task, rows_checked=0, method=spec.train.method, notes=[f"{why}; not checked"]
    )


def _child() -> None:
    """``python -I -m services.fetcher.preflight``: a request on stdin, the event on stdout."""
    _limit()
    raw = sys.stdin.buffer.read()
    head, _, body = raw.partition(b"\n")
    spec = ProjectSpec.model_validate(json.loads(head)["spec"])
    event = evaluate(spec, _decode(body))
    sys.stdout.write(
        json.dumps({"type": type(event).__name__, "payload": event.model_dump(mode="json")})
    )


if __name__ == "__main__":
    _child()
