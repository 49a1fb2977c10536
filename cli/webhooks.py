"""``aidp webhooks …``: a project's signed notifications (editors): add, list, remove, and
the delivery log. The signing secret is printed once, when the webhook is added."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from cli.output import JsonOpt, WideOpt, console, handle_errors, print_json, print_table
from cli.resolve import pick
from cli.sdk import Client
from cli.text import plain

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(
    help="Signed notifications when a project's runs end or its models deploy.",
    no_args_is_help=True,
)

KINDS = ("run.succeeded", "run.failed", "run.cancelled", "model.deployed")
ProjectArg = Annotated[str, typer.Argument(help="Project id or name.")]


def _hook_id(client: Client, project_id: str, ref: str) -> str:
    hooks = client.request("GET", f"/api/projects/{project_id}/webhooks")
    return pick("webhook", ref, ((str(h["id"]), str(h.get("url", ""))) for h in hooks))


@webhooks_app.command("add")
@handle_errors
def webhooks_add(
    project: ProjectArg,
    url: Annotated[str, typer.Argument(help="The receiver (https://…).")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help=f"Notify on (repeatable): {', '.join(KINDS)}."),
    ] = None,
    slack: Annotated[bool, typer.Option("--slack", help='Send {"text": …} for Slack.')] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a webhook; its signing secret is shown once."""
    client = Client.from_config()
    found = client.find_project(project)
    body: dict[str, object] = {"url": url, "format": "slack" if slack else "json"}
    if event:
        body["events"] = list(event)
    made = client.request("POST", f"/api/projects/{found['id']}/webhooks", json=body)
    if as_json:
        print_json(made)
        return
    console.print(Text("webhook ") + plain(made["id"]) + Text(" → ") + plain(made["url"]))
    console.print(
        Text("signing secret (shown once; X-Aidp-Signature is HMAC-SHA256 of timestamp.body): ")
        + plain(made["secret"]),
        highlight=False,
    )


@webhooks_app.command("list")
@handle_errors
def webhooks_list(project: ProjectArg, as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """A project's webhooks (never their secrets)."""
    client = Client.from_config()
    rows = client.request("GET", f"/api/projects/{client.find_project(project)['id']}/webhooks")
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [("id", "id"), ("url", "url"), ("format", "format"), ("events", "events")],
        empty="no webhooks",
        wide=wide,
    )


@webhooks_app.command("remove")
@handle_errors
def webhooks_remove(
    project: ProjectArg,
    webhook: Annotated[str, typer.Argument(help="Webhook id (or a unique prefix).")],
) -> None:
    """Remove a webhook and its delivery log."""
    client = Client.from_config()
    project_id = str(client.find_project(project)["id"])
    hook_id = _hook_id(client, project_id, webhook)
    client.request("DELETE", f"/api/projects/{project_id}/webhooks/{hook_id}")
    console.print(f"webhook {hook_id} removed", highlight=False)


@webhooks_app.command("deliveries")
@handle_errors
def webhooks_deliveries(
    project: ProjectArg,
    webhook: Annotated[str, typer.Argument(help="Webhook id (or a unique prefix).")],
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """A webhook's delivery log, newest first: status, tries, last answer."""
    client = Client.from_config()
    project_id = str(client.find_project(project)["id"])
    hook_id = _hook_id(client, project_id, webhook)
    rows = client.request("GET", f"/api/projects/{project_id}/webhooks/{hook_id}/deliveries")
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            ("id", "id"),
            ("event", "kind"),
            ("status", "status"),
            ("tries", "attempts"),
            ("code", "last_status_code"),
            ("error", "last_error"),
            ("created", "created_at"),
        ],
        empty="no deliveries yet",
        wide=wide,
    )
