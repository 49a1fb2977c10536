"""The ``aidp`` command (DESIGN §7). Every command talks to the server through the SDK.

Exit codes: 0 ok, 1 a run failed (or the server failed us), 2 usage errors (bad arguments,
invalid spec, not logged in).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cli.config import DEFAULT_SERVER, Config, load_config, save_config
from cli.follow import (
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
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    print_table,
)
from cli.sdk import Client
from cli.specfile import load_spec

__all__ = ["app"]

app = typer.Typer(
    name="aidp",
    help="aidp: from a HuggingFace model and a dataset to a trained, deployed model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
secrets_app = typer.Typer(
    help="Store secrets (HF/Kaggle tokens, SSH keys): values go in, names come out.",
    no_args_is_help=True,
)
tokens_app = typer.Typer(help="API tokens for CI (use with AIDP_TOKEN).", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
app.add_typer(tokens_app, name="tokens")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


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


# --- account ---------------------------------------------------------------------------


def _ask_password(password: str | None, *, confirm: bool = False) -> str:
    if password is not None:
        return password
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if line:
            return line
        raise fail("no password given: use --password or type it at the prompt", EXIT_USAGE)
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


def _save_login(config: Config, client: Client, email: str | None) -> None:
    config.server, config.email = client.server, email
    config.access_token, config.refresh_token = client.access_token, client.refresh_token
    config.api_token = client.api_token
    path = save_config(config)
    console.print(
        f"logged in to {client.server} as {email or 'API token'} [dim](saved to {path})[/]",
        highlight=False,
    )


ServerOpt = Annotated[
    str | None, typer.Option("--server", envvar="AIDP_SERVER", help="aidp server URL.")
]


@app.command()
@handle_errors
def login(
    server: ServerOpt = None,
    email: Annotated[str | None, typer.Option(help="Your account email.")] = None,
    password: Annotated[str | None, typer.Option(help="Omit to be prompted.")] = None,
    token: Annotated[
        str | None, typer.Option(help="An API token (aidp_…) instead of a password.")
    ] = None,
) -> None:
    """Log in and remember the server and tokens in ~/.aidp/config (mode 0600)."""
    config = load_config()
    server = server or config.server or DEFAULT_SERVER
    if token:
        if not token.startswith("aidp_"):
            raise fail(
                "an API token starts with 'aidp_' (create one with `aidp tokens create`)",
                EXIT_USAGE,
            )
        client = Client(server, api_token=token)
        me = client.me()
        _save_login(config, client, me.get("email"))
        return
    email = email or str(typer.prompt("Email", default=config.email))
    client = Client(server)
    client.sign_in(email, _ask_password(password))
    _save_login(config, client, email)


@app.command()
@handle_errors
def register(
    server: ServerOpt = None,
    email: Annotated[str | None, typer.Option(help="Your email.")] = None,
    password: Annotated[str | None, typer.Option(help="Omit to be prompted.")] = None,
) -> None:
    """Create an account, then log in with it."""
    config = load_config()
    server = server or config.server or DEFAULT_SERVER
    email = email or typer.prompt("Email")
    secret = _ask_password(password, confirm=True)
    client = Client(server)
    client.register(email, secret)
    client.sign_in(email, secret)
    _save_login(config, client, email)


@app.command()
@handle_errors
def logout() -> None:
    """Revoke this session and forget the tokens."""
    config = load_config()
    client = Client.from_config()
    client.logout()
    config.access_token = config.refresh_token = config.api_token = None
    save_config(config)
    console.print("logged out")


@app.command()
@handle_errors
def whoami(as_json: JsonOpt = False) -> None:
    """Show who you are logged in as, and where."""
    client = _client()
    me = client.me()
    if as_json:
        print_json(me)
    else:
        console.print(f"{me.get('email')} on {client.server}", highlight=False)


@tokens_app.command("create")
@handle_errors
def tokens_create(name: str) -> None:
    """Create an API token; it is shown once."""
    body = _client().create_api_token(name)
    token = body.get("token") or body.get("value") or body.get("api_token")
    console.print(f"API token {name!r} (shown once): {token}", highlight=False, markup=False)


@tokens_app.command("list")
@handle_errors
def tokens_list(as_json: JsonOpt = False) -> None:
    """List your API tokens (never their values)."""
    rows = _client().list_api_tokens()
    if as_json:
        print_json(rows)
    else:
        print_table(rows, [("id", "id"), ("name", "name"), ("created", "created_at")])


# --- secrets ---------------------------------------------------------------------------


@secrets_app.command("set")
@handle_errors
def secrets_set(
    name: str,
    value: Annotated[str | None, typer.Option(help="Omit to read stdin or be prompted.")] = None,
) -> None:
    """Store a secret (e.g. HF_TOKEN); the value is never shown again."""
    if value is None:
        value = (
            typer.prompt(f"Value of {name}", hide_input=True)
            if sys.stdin.isatty()
            else sys.stdin.read().rstrip("\n")
        )
    if not value:
        raise fail("empty secret value", EXIT_USAGE)
    _client().set_secret(name, value)
    console.print(f"secret {name} stored", highlight=False)


@secrets_app.command("list")
@handle_errors
def secrets_list(as_json: JsonOpt = False) -> None:
    """List the names of your secrets."""
    names = [s if isinstance(s, str) else s.get("name") for s in _client().list_secrets()]
    if as_json:
        print_json(names)
    elif not names:
        console.print("[dim]no secrets yet: aidp secrets set HF_TOKEN[/]")
    else:
        for n in names:
            console.print(n, highlight=False)


@secrets_app.command("delete")
@handle_errors
def secrets_delete(name: str) -> None:
    """Delete a secret."""
    _client().delete_secret(name)
    console.print(f"secret {name} deleted", highlight=False)


# --- projects and runs -----------------------------------------------------------------


@app.command()
@handle_errors
def run(
    spec: Annotated[Path, typer.Argument(help="Project spec (YAML, DESIGN §4).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show live progress.")] = False,
    name: Annotated[str | None, typer.Option(help="Override the spec's name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project from SPEC (or a new run if the name exists) and start it."""
    data = load_spec(spec, name=name)
    client = _client()
    existing = next((p for p in client.list_projects() if p.get("name") == data["name"]), None)
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
        view = follow_run(
            client,
            project_id=project_id,
            run_id=run_id,
            renderer=_renderer(show_logs=True),
            view=view,
        )
        raise typer.Exit(_outcome(client, view))


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
        f"[bold red]✘ {view.status}[/]{': ' + view.reason if view.reason else ''}",
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
def projects(as_json: JsonOpt = False) -> None:
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
        )


@app.command()
@handle_errors
def runs(
    project: Annotated[
        str | None, typer.Argument(help="Project id or name (default: all).")
    ] = None,
    as_json: JsonOpt = False,
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
        projects(as_json=as_json)
        return
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
            console.print(f"  {key}: {run_body[key]}", highlight=False)
    line = progress_line(view)
    if line:
        console.print(f"  {line}", highlight=False)
    if view.endpoint:
        console.print(f"  endpoint: {client.server}{view.endpoint}", highlight=False)


@app.command()
@handle_errors
def logs(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream live progress.")] = False,
) -> None:
    """Print a run's training logs; -f follows it live until it ends."""
    client = _client()
    if not follow:
        for line in client.run_logs(run_id):
            typer.echo(line)
        return
    run_body = client.get_run(run_id)
    view = follow_run(
        client,
        project_id=str(run_body["project_id"]),
        run_id=run_id,
        renderer=_renderer(show_logs=True),
    )
    raise typer.Exit(_outcome(client, view))


@app.command()
@handle_errors
def cancel(run_id: Annotated[str, typer.Argument(metavar="RUN")]) -> None:
    """Cancel a run: training stops and its nodes are released."""
    _client().cancel_run(run_id)
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
    console.print(f"project {found.get('name')} deleted", highlight=False)


@app.command()
@handle_errors
def models(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Model versions of a project, with their lineage."""
    client = _client()
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
        )


@app.command()
@handle_errors
def artifacts(as_json: JsonOpt = False) -> None:
    """Cached models and datasets (content-addressed, encrypted at rest)."""
    rows = _client().list_artifacts()
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


@app.command()
@handle_errors
def upload(
    file: Annotated[Path, typer.Argument(help="A dataset file (csv, jsonl, zip…).")],
    as_json: JsonOpt = False,
) -> None:
    """Upload a dataset file; prints the upload:// URI to use as the spec's dataset."""
    if not file.is_file():
        raise fail(f"{file}: no such file", EXIT_USAGE)
    client = _client()
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


@app.command()
@handle_errors
def deploy(
    model_id: Annotated[str, typer.Argument(metavar="MODEL", help="A model version id.")],
    wait: Annotated[bool, typer.Option(help="Wait until the deployment is serving.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300.0,
) -> None:
    """Deploy a model version behind an authenticated endpoint."""
    import time

    client = _client()
    body = client.deploy(model_id)
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


@app.command()
@handle_errors
def predict(
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="Input text (repeatable).")],
    as_json: JsonOpt = False,
) -> None:
    """Send inputs to a deployed model and print its predictions."""
    outputs = _client().predict(deployment_id, list(inputs))
    if as_json:
        print_json(outputs)
        return
    for text, out in zip(inputs, outputs, strict=False):
        console.print(f"{text!r} → {_render_output(out)}", highlight=False, markup=False)


def _render_output(out: Any) -> str:
    if isinstance(out, dict) and "label" in out:
        score = out.get("score")
        return f"{out['label']}" + (f" ({score:.3f})" if isinstance(score, float) else "")
    return str(out)


@app.command()
@handle_errors
def share(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    email: Annotated[str, typer.Argument(help="Who to add.")],
    role: Annotated[str, typer.Option(help="viewer, editor or owner.")] = "viewer",
) -> None:
    """Give another user a role on a project."""
    if role not in ("viewer", "editor", "owner"):
        raise fail("--role is viewer, editor or owner", EXIT_USAGE)
    client = _client()
    client.add_member(client.find_project(project)["id"], email, role)
    console.print(f"{email} is now {role} of {project}", highlight=False)


if __name__ == "__main__":  # python -m cli.main
    app()
