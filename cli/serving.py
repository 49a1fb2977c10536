"""Model and artifact commands: versions, cache, uploads, deployments, predictions, sharing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cli.members import invite
from cli.output import (
    EXIT_USAGE,
    JsonOpt,
    WideOpt,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    print_table,
)
from cli.resolve import resolve_deployment, resolve_model
from cli.sdk import Client
from cli.text import printable

__all__ = ["artifacts", "deploy", "models", "predict", "share", "upload"]


@handle_errors
def models(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Model versions of a project, with their lineage."""
    client = Client.from_config()
    rows = client.list_models(client.find_project(project)["id"])
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("version", "version"),
                ("id", "id"),
                ("run", "run_id"),
                ("metrics", "metrics"),
                ("base model", "lineage.model"),
                ("dataset", "lineage.dataset"),
                ("created", "created_at"),
            ],
            empty="no model versions yet",
            wide=wide,
        )


@handle_errors
def artifacts(as_json: JsonOpt = False) -> None:
    """Cached models and datasets (content-addressed, encrypted at rest)."""
    rows = Client.from_config().list_artifacts()
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("kind", "kind"),
                ("source", "source"),
                ("revision", "resolved_revision"),
                ("size", "size_bytes"),
                ("digest", "digest"),
                ("last used", "last_used_at"),
            ],
            empty="no cached artifacts yet",
        )


@handle_errors
def upload(
    file: Annotated[Path, typer.Argument(help="A dataset file (csv, jsonl, zip…).")],
    as_json: JsonOpt = False,
) -> None:
    """Upload a dataset file; prints the upload:// URI to use as the spec's dataset."""
    if not file.is_file():
        raise fail(f"{file}: no such file", EXIT_USAGE)
    client = Client.from_config()
    with Progress(
        TextColumn("upload"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("upload", total=file.stat().st_size)
        body = client.upload(file, progress=lambda done, _t: bar.update(task, completed=done))
    if as_json:
        print_json(body)
    else:
        console.print(f"uploaded {file.name}: dataset: {body.get('uri')}", highlight=False)


# --- serving ---------------------------------------------------------------------------


@handle_errors
def deploy(
    model_id: Annotated[str, typer.Argument(metavar="MODEL", help="A model version id.")],
    wait: Annotated[bool, typer.Option(help="Wait until the deployment is serving.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300.0,
) -> None:
    """Deploy a model version behind an authenticated endpoint."""
    client = Client.from_config()
    body = client.deploy(resolve_model(client, model_id))
    dep_id = str(body.get("deployment_id") or body.get("id"))
    console.print(f"deployment {dep_id} requested", highlight=False)
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = body
    while wait and time.monotonic() < deadline:
        info = client.get_deployment(dep_id)
        if info.get("status") in ("failed", "deleted"):
            raise fail(f"deployment {dep_id} {info.get('status')}: {info.get('reason', '')}")
        if info.get("status") in ("ready", "deployed", "running", "serving"):
            break
        time.sleep(1.0)
    endpoint = info.get("endpoint") or f"/api/deployments/{dep_id}/predict"
    console.print(
        f"endpoint: {client.server}{endpoint}  (status {info.get('status')})", highlight=False
    )


@handle_errors
def predict(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="Input text (repeatable).")],
    as_json: JsonOpt = False,
) -> None:
    """Send inputs to a deployed model and print its predictions."""
    client = Client.from_config()
    outputs = client.predict(resolve_deployment(client, deployment_id), list(inputs))
    if as_json:
        print_json(outputs)
        return
    for text, out in zip(inputs, outputs, strict=False):
        line = printable(f"{text!r} → {_render_output(out)}")  # model output: no escapes
        console.print(line, highlight=False, markup=False)


def _render_output(out: Any) -> str:
    if isinstance(out, dict) and "label" in out:
        score = out.get("score")
        return f"{out['label']}" + (f" ({score:.3f})" if isinstance(score, float) else "")
    return str(out)


@handle_errors
def share(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    email: Annotated[str, typer.Argument(help="Who to invite.")],
    role: Annotated[str, typer.Option(help="viewer, editor or owner.")] = "viewer",
) -> None:
    """Invite another user to a project (same as ``aidp members add``)."""
    invite(Client.from_config(), project, email, role)
