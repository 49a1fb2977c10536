"""Sharing projects: ``aidp members …`` (owners invite, list, remove) and
``aidp invitations …`` (the invitee lists, accepts, declines).

Adding a member is an invitation the invitee accepts (the gateway answers 202 whether or
not the email is registered); someone already a member gets the new role at once. Emails
and project names come from other users: they are printed through :mod:`cli.text`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from cli.output import EXIT_USAGE, JsonOpt, console, fail, handle_errors, print_json, print_table
from cli.sdk import ApiError, Client
from cli.text import plain

__all__ = ["invitations_app", "invite", "members_app"]

members_app = typer.Typer(
    help="Who may see and change a project: invite, list, remove.", no_args_is_help=True
)
invitations_app = typer.Typer(
    help="Projects others invited you to: list, accept, decline.", no_args_is_help=True
)

ROLES = ("viewer", "editor", "owner")
ProjectArg = Annotated[str, typer.Argument(help="Project id or name.")]


def invite(client: Client, project: str, email: str, role: str) -> None:
    """Invite ``email`` to ``project`` (or change an existing member's role) and say so."""
    if role not in ROLES:
        raise fail("--role is viewer, editor or owner", EXIT_USAGE)
    found = client.find_project(project)
    answer = client.add_member(found["id"], email, role)
    if answer.get("status") == "invited":
        line = Text("invited ") + plain(answer.get("email") or email)
        line += Text(f" as {role} to ") + plain(found.get("name"))
        line += Text(" (they accept with: aidp invitations accept ") + plain(found.get("name"))
        console.print(line + Text(")"), highlight=False)
    else:
        line = plain(answer.get("email") or email) + Text(f" is now {role} of ")
        console.print(line + plain(found.get("name")), highlight=False)


@members_app.command("add")
@handle_errors
def members_add(
    project: ProjectArg,
    email: Annotated[str, typer.Argument(help="Who to invite.")],
    role: Annotated[str, typer.Option(help="viewer, editor or owner.")] = "viewer",
) -> None:
    """Invite someone to a project (owner); they join when they accept."""
    invite(Client.from_config(), project, email, role)


@members_app.command("list")
@handle_errors
def members_list(project: ProjectArg, as_json: JsonOpt = False) -> None:
    """Members of a project, and (owners) its pending invitations."""
    client = Client.from_config()
    found = client.find_project(project)
    rows: list[dict[str, Any]] = [
        {**m, "status": "member"} for m in client.list_members(found["id"])
    ]
    if found.get("role") == "owner":
        rows += client.list_project_invitations(found["id"])
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [("email", "email"), ("role", "role"), ("status", "status"), ("since", "created_at")],
            empty="no members",
        )


@members_app.command("remove")
@handle_errors
def members_remove(
    project: ProjectArg,
    email: Annotated[str, typer.Argument(help="A member's or a pending invitee's email.")],
) -> None:
    """Remove a member, or withdraw a pending invitation (owner)."""
    client = Client.from_config()
    found = client.find_project(project)
    wanted = email.casefold()
    for member in client.list_members(found["id"]):
        if str(member.get("email", "")).casefold() == wanted:
            client.remove_member(found["id"], str(member["user_id"]))
            console.print(Text("removed ") + plain(member.get("email")), highlight=False)
            return
    if found.get("role") == "owner":
        for pending in client.list_project_invitations(found["id"]):
            if str(pending.get("email", "")).casefold() == wanted:
                client.withdraw_invitation(found["id"], str(pending["id"]))
                line = Text("withdrew the invitation of ") + plain(pending.get("email"))
                console.print(line, highlight=False)
                return
    raise ApiError(404, "not_found", f"{email} is not a member of {found.get('name')}")


def _find_invitation(client: Client, ref: str) -> dict[str, Any]:
    """Your invitation by its id, or by the id or name of the project it invites you to."""
    for invitation in client.list_invitations():
        if ref in (invitation.get("id"), invitation.get("project_id")):
            return invitation
        if ref == invitation.get("project_name"):
            return invitation
    raise ApiError(404, "not_found", f"no pending invitation for {ref!r} (see: aidp invitations)")


@invitations_app.command("list")
@handle_errors
def invitations_list(as_json: JsonOpt = False) -> None:
    """Your pending invitations."""
    rows = Client.from_config().list_invitations()
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("id", "id"),
                ("project", "project_name"),
                ("role", "role"),
                ("invited by", "invited_by_email"),
                ("since", "created_at"),
            ],
            empty="no pending invitations",
        )


@invitations_app.command("accept")
@handle_errors
def invitations_accept(
    ref: Annotated[str, typer.Argument(metavar="INVITATION", help="Invitation id or project.")],
) -> None:
    """Join the project an invitation is for, with its role."""
    client = Client.from_config()
    invitation = _find_invitation(client, ref)
    member = client.accept_invitation(str(invitation["id"]))
    line = Text(f"joined as {member.get('role') or invitation.get('role')}: ")
    console.print(line + plain(invitation.get("project_name")), highlight=False)


@invitations_app.command("decline")
@handle_errors
def invitations_decline(
    ref: Annotated[str, typer.Argument(metavar="INVITATION", help="Invitation id or project.")],
) -> None:
    """Refuse an invitation; it is removed."""
    client = Client.from_config()
    invitation = _find_invitation(client, ref)
    client.decline_invitation(str(invitation["id"]))
    console.print(Text("declined ") + plain(invitation.get("project_name")), highlight=False)
