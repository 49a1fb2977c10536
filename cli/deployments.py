"""``aidp deployments …``: list the deployments of your projects, stop, start, promote
one, and roll a project's live endpoint back (issue 16).

A deployment is a model version behind an inference endpoint. Each project has one live
alias (``/api/projects/{id}/endpoint``): the deployment a new version replaced is stopped
once the new one runs, unless it was deployed with ``keep_previous``. Ids take a unique
prefix (cli/resolve.py); project names come from other users and print through
:mod:`cli.text`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from cli.output import JsonOpt, WideOpt, console, handle_errors, print_json, print_table
from cli.resolve import resolve_deployment
from cli.sdk import Client
from cli.text import plain

__all__ = ["deployments_app"]

deployments_app = typer.Typer(
    help="Deployments of your projects: list, stop, start, promote, rollback.",
    no_args_is_help=True,
)

DeploymentArg = Annotated[str, typer.Argument(help="Deployment id (or a unique prefix).")]


def _rows(deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in deployments:
        replicas = f"{d.get('replicas_up', 0)}/{d.get('replicas', 1)}"
        idle = d.get("idle_timeout_s")
        rows.append(
            {
                **d,
                "live_mark": "live" if d.get("live") else "",
                "version": f"v{d['model_version']}" if d.get("model_version") else "",
                "replicas_text": replicas,
                "idle_text": f"{idle}s" if idle else "never",
            }
        )
    return rows


@deployments_app.command("list")
@handle_errors
def deployments_list(
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project (id or name).")
    ] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Deployments of your projects: state, version, replicas, the live one."""
    client = Client.from_config()
    project_id = str(client.find_project(project)["id"]) if project else None
    deployments = client.list_deployments(project_id)
    if as_json:
        print_json(deployments)
        return
    print_table(
        _rows(deployments),
        [
            ("id", "id"),
            ("project", "project_name"),
            ("version", "version"),
            ("status", "status"),
            ("live", "live_mark"),
            ("replicas", "replicas_text"),
            ("scale to zero", "idle_text"),
            ("created", "created_at"),
        ],
        empty="no deployments",
        wide=wide,
    )


def _said(verb: str, dep: dict[str, Any]) -> None:
    line = Text(f"{verb} ") + plain(str(dep.get("id")))
    if dep.get("project_name"):
        line += Text(" of ") + plain(str(dep["project_name"]))
    line += Text(f" (now {dep.get('status')}")
    line += Text(", live)" if dep.get("live") else ")")
    console.print(line, highlight=False)


@deployments_app.command("stop")
@handle_errors
def deployments_stop(
    deployment: DeploymentArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop a deployment's servers (it can be started again)."""
    client = Client.from_config()
    dep_id = resolve_deployment(client, deployment)
    if not yes and not as_json:
        current = client.get_deployment(dep_id)
        what = Text("stop deployment ") + plain(dep_id)
        if current.get("live"):
            what += Text(", the live endpoint of ") + plain(str(current.get("project_name")))
        console.print(what + Text("?"), highlight=False)
        typer.confirm("continue", abort=True)
    dep = client.deployment_action(dep_id, "stop")
    if as_json:
        print_json(dep)
    else:
        _said("stopped", dep)


@deployments_app.command("start")
@handle_errors
def deployments_start(deployment: DeploymentArg, as_json: JsonOpt = False) -> None:
    """Start a stopped, failed or scaled-to-zero deployment again."""
    client = Client.from_config()
    dep = client.deployment_action(resolve_deployment(client, deployment), "start")
    if as_json:
        print_json(dep)
    else:
        _said("starting", dep)


@deployments_app.command("promote")
@handle_errors
def deployments_promote(
    deployment: DeploymentArg,
    keep_previous: Annotated[
        bool, typer.Option("--keep-previous", help="Leave the project's other deployments up.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make a deployment its project's live endpoint (a stopped one is started first)."""
    client = Client.from_config()
    body: dict[str, Any] = {"keep_previous": True} if keep_previous else {}
    dep = client.deployment_action(resolve_deployment(client, deployment), "promote", **body)
    if as_json:
        print_json(dep)
    else:
        _said("promoted", dep)


@deployments_app.command("rollback")
@handle_errors
def deployments_rollback(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """Point a project's live endpoint back at the deployment live before."""
    client = Client.from_config()
    found = client.find_project(project)
    endpoint = client.rollback_endpoint(str(found["id"]))
    if as_json:
        print_json(endpoint)
        return
    console.print(
        Text("rolled back ")
        + plain(str(found.get("name")))
        + Text(": live deployment ")
        + plain(str(endpoint.get("deployment_id")))
        + Text(" (a stopped one takes over once it runs)"),
        highlight=False,
    )
