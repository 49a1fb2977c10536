"""The ``aidp`` command (docs/design.md §7). Every command talks to the server through the SDK.

Exit codes: 0 ok, 1 a run failed (or the server failed us), 2 usage errors (bad arguments,
invalid spec, not logged in).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from cli import account, deployments, members, serving, webhooks
from cli.chat import chat
from cli.follow import (
    FINAL_STATUSES,
    LiveRenderer,
    PlainRenderer,
    Renderer,
    RunView,
    follow_run,
    progress_line,
)
from cli.output import (
    EXIT_FAILED,
    EXIT_OK,
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
from cli.resolve import resolve_run
from cli.sdk import Client
from cli.specfile import load_spec
from cli.text import plain, printable
from services import SERVICES

__all__ = ["app"]

app = typer.Typer(
    name="aidp",
    help="aidp: from a HuggingFace model and a dataset to a trained, deployed model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _client() -> Client:
    return Client.from_config()


def _renderer(show_logs: bool) -> Renderer:
    if console.is_terminal:
        return LiveRenderer(console, show_logs=show_logs)
    return PlainRenderer(console, show_logs=show_logs)


# --- platform --------------------------------------------------------------------------


@app.command()
def up(
    host: Annotated[str, typer.Option(envvar="AIDP_HOST", help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AIDP_PORT", help="Port for the UI and API.")] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="AIDP_DATA_DIR", help="Where aidp keeps its state [~/.aidp]."),
    ] = None,
) -> None:
    """Run the whole platform in this process (embedded mode) and serve the UI."""
    from services.embedded import serve

    data_dir = (data_dir or Path.home() / ".aidp").expanduser()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"[bold]aidp[/] starting: UI and API on [link]http://{shown}:{port}[/link]"
        f"  (data in {data_dir})",
        highlight=False,
    )
    serve(host=host, port=port, data_dir=data_dir)


@app.command("serve")
def serve_one(
    service: Annotated[str, typer.Argument(help="One of: " + ", ".join(SERVICES) + ".")],
) -> None:
    """Run ONE service as its own process (distributed mode; settings from AIDP_*)."""
    if service not in SERVICES:
        raise fail(f"unknown service {service!r}: choose one of {', '.join(SERVICES)}", EXIT_USAGE)
    import importlib

    entry = importlib.import_module(f"services.{service}.__main__").main
    if service == "auth":
        entry([])  # auth's main also takes admin subcommands: run the server only
    else:
        entry()


# --- account ---------------------------------------------------------------------------


# --- projects and runs -----------------------------------------------------------------


@app.command()
@handle_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Project spec (YAML, docs/design.md §4).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show live progress.")] = False,
    name: Annotated[str | None, typer.Option(help="Override the spec's name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project from SPEC (or a new run if the name exists) and start it."""
    data = load_spec(spec, name=name)
    client = _client()
    # your own project of that name (names are unique per owner), not one shared with you
    existing = next(
        (
            p
            for p in client.list_projects()
            if p.get("name") == data["name"] and p.get("role") == "owner"
        ),
        None,
    )
    if existing:
        run_body = client.start_run(existing["id"], spec=data)
        project_id, run_id = existing["id"], str(run_body.get("id") or run_body.get("run_id"))
    else:
        project = client.create_project(data)
        project_id, run_id = project["id"], str(project.get("current_run_id"))
    if as_json and not follow:
        print_json({"project_id": project_id, "run_id": run_id})
        return
    console.print(
        f"project [bold]{data['name']}[/] ({project_id}) run [bold]{run_id}[/] started\n"
        f"[dim]UI: {client.server}/#/projects/{project_id}   logs: aidp logs {run_id} -f[/]",
        highlight=False,
    )
    if follow:
        deploy = bool((data.get("deploy") or {}).get("enabled", False))
        view = RunView(run_id=run_id, deploy_enabled=deploy)
        raise typer.Exit(_follow(client, project_id, run_id, view))


def _follow(client: Client, project_id: str, run_id: str, view: RunView) -> int:
    """Show live progress until the run ends; return the exit code. Ctrl-C only detaches."""
    try:
        view = follow_run(
            client, project_id=project_id, run_id=run_id, renderer=_renderer(True), view=view
        )
    except KeyboardInterrupt:
        err_console.print(f"stopped following; the run goes on (aidp logs {run_id} -f)")
        return EXIT_FAILED
    return _outcome(client, view)


def _outcome(client: Client, view: RunView) -> int:
    """Print how the run ended; return the exit code."""
    if view.status == "deployed":
        endpoint = view.endpoint or f"/api/deployments/{view.deployment_id}/predict"
        console.print(
            f"[bold green]✔ deployed[/] model {view.model_version or ''}: "
            f"{client.server}{endpoint}\n"
            f"  try: aidp predict {view.deployment_id} --input 'some text'",
            highlight=False,
        )
        return EXIT_OK
    if view.status == "succeeded":
        console.print(
            f"[bold green]✔ succeeded[/]: model {view.model_version or ''}", highlight=False
        )
        return EXIT_OK
    console.print(
        Text(f"✘ {view.status}", style="bold red")
        + (Text(": ") + plain(view.reason) if view.reason else Text("")),
        highlight=False,
    )
    return EXIT_FAILED


def _project_runs(client: Client, project: str | None) -> list[dict[str, Any]]:
    projects = [client.find_project(project)] if project else client.list_projects()
    rows = []
    for p in projects:
        for r in client.list_runs(p["id"]):
            rows.append({**r, "project": p.get("name")})
    return rows


@app.command()
@handle_errors
def projects(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """List your projects and their status."""
    rows = _client().list_projects()
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("name", "name"),
                ("id", "id"),
                ("status", "status"),
                ("run", "current_run_id"),
                ("role", "role"),
            ],
            empty="no projects yet: aidp run SPEC.yaml",
            wide=wide,
        )


@app.command()
@handle_errors
def runs(
    project: Annotated[
        str | None, typer.Argument(help="Project id or name (default: all).")
    ] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List runs (of one project, or of all of them)."""
    rows = _project_runs(_client(), project)
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("project", "project"),
                ("#", "number"),
                ("run", "id"),
                ("status", "status"),
                ("created", "created_at"),
                ("finished", "finished_at"),
            ],
            empty="no runs yet",
            wide=wide,
        )


@app.command()
@handle_errors
def status(
    run_id: Annotated[str | None, typer.Argument(metavar="RUN", help="A run id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Status of one run, or of every project when no RUN is given."""
    client = _client()
    if run_id is None:
        projects(as_json=as_json, wide=False)
        return
    run_id = resolve_run(client, run_id)
    run_body = client.get_run(run_id)
    view = RunView(run_id=run_id)
    for item in client.run_events(run_id):
        envelope = item.get("event", item)
        view.apply(envelope, item.get("seq"))
    if as_json:
        print_json(run_body)
        return
    console.print(f"run {run_id}: [bold]{run_body.get('status')}[/]", highlight=False)
    for key in ("project_id", "number", "created_at", "finished_at", "reason"):
        if run_body.get(key) is not None:
            console.print(Text(f"  {key}: ") + plain(run_body[key]), highlight=False)
    line = progress_line(view)
    if line:
        console.print(Text("  ") + plain(line), highlight=False)
    if view.endpoint:
        console.print(f"  endpoint: {client.server}{view.endpoint}", highlight=False)


@app.command()
@handle_errors
def logs(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream live progress.")] = False,
) -> None:
    """Print a run's training logs; -f follows it live until it ends (a run that has
    already ended: its stored lines and how it ended, exit 0 only if it succeeded)."""
    client = _client()
    run_id = resolve_run(client, run_id)
    run_body = client.get_run(run_id) if follow else {}
    if not follow or run_body.get("status") in FINAL_STATUSES:
        for line in client.run_logs(run_id):
            typer.echo(printable(line))  # as text: no markup, no escape sequences
        if follow:  # the same ending (and exit code) as following it live would have had
            ended = RunView(
                run_id=run_id,
                status=str(run_body["status"]),
                reason=run_body.get("error"),
                model_version=run_body.get("model_version"),
                deployment_id=run_body.get("deployment_id"),
                endpoint=run_body.get("endpoint"),
            )
            raise typer.Exit(_outcome(client, ended))
        return
    raise typer.Exit(_follow(client, str(run_body["project_id"]), run_id, RunView(run_id=run_id)))


@app.command()
@handle_errors
def cancel(run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """Cancel a run: training stops and its nodes are released."""
    client = _client()
    run_id = resolve_run(client, run_id)
    client.cancel_run(run_id)
    console.print(f"run {run_id} cancelling", highlight=False)


@app.command()
@handle_errors
def down(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a project: stop its runs, release its nodes, remove its deployments."""
    client = _client()
    found = client.find_project(project)
    if not yes:
        if not sys.stdin.isatty():
            raise fail("refusing to delete without --yes when not interactive", EXIT_USAGE)
        typer.confirm(f"Delete project {found.get('name')} and everything it made?", abort=True)
    client.delete_project(found["id"])
    console.print(Text("project ") + plain(found.get("name")) + " deleted", highlight=False)


_COMMANDS: tuple[Callable[..., None], ...] = (
    account.login,
    account.register,
    account.logout,
    account.whoami,
    serving.models,
    serving.artifacts,
    serving.upload,
    serving.deploy,
    serving.predict,
    serving.share,
    chat,
)
for _command in _COMMANDS:
    app.command()(_command)
app.add_typer(account.secrets_app, name="secrets")
app.add_typer(account.tokens_app, name="tokens")
app.add_typer(members.members_app, name="members")
app.add_typer(deployments.deployments_app, name="deployments")
app.add_typer(members.invitations_app, name="invitations")
app.add_typer(webhooks.webhooks_app, name="webhooks")


if __name__ == "__main__":  # python -m cli.main
    app()
