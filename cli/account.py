"""Account commands: log in and out, API tokens, and secrets (values in, names out)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.config import DEFAULT_SERVER, Config, load_config, save_config
from cli.output import (
    EXIT_USAGE,
    JsonOpt,
    WideOpt,
    console,
    fail,
    handle_errors,
    print_json,
    print_table,
)
from cli.resolve import pick
from cli.sdk import Client

__all__ = ["login", "logout", "register", "secrets_app", "tokens_app", "whoami"]

secrets_app = typer.Typer(
    help="Store secrets (HF/Kaggle tokens, SSH keys): values go in, names come out.",
    no_args_is_help=True,
)
tokens_app = typer.Typer(help="API tokens for CI (use with AIDP_TOKEN).", no_args_is_help=True)

ServerOpt = Annotated[
    str | None, typer.Option("--server", envvar="AIDP_SERVER", help="aidp server URL.")
]


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


@handle_errors
def login(
    server: ServerOpt = None,
    email: Annotated[str | None, typer.Option(help="Your account email.")] = None,
    password: Annotated[str | None, typer.Option(help="Omit to be prompted.")] = None,
    token: Annotated[
        str | None, typer.Option(help="An API token (aidp_…) instead of a password.")
    ] = None,
    sso: Annotated[
        bool,
        typer.Option(
            "--sso",
            help="Sign in with the platform's identity provider (single sign-on) in a browser.",
        ),
    ] = False,
    invitation: Annotated[
        str | None, typer.Option(help="With --sso: an invitation code (invite-only platforms).")
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="With --sso: only print the sign-in URL.")
    ] = False,
) -> None:
    """Log in and remember the server and tokens in the CLI config file (mode 0600)."""
    config = load_config()
    server = server or config.server or DEFAULT_SERVER
    if sso:
        from cli.sso import SsoFailed, sso_sign_in

        client = Client(server)
        try:
            me = sso_sign_in(
                client,
                invitation=invitation,
                open_browser=not no_browser,
                show_url=lambda url: console.print(
                    f"Sign in in your browser: {url}", highlight=False, soft_wrap=True
                ),
            )
        except SsoFailed as exc:
            raise fail(str(exc)) from None
        _save_login(config, client, me.get("email"))
        return
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


@handle_errors
def logout() -> None:
    """Revoke this session and forget the tokens."""
    config = load_config()
    client = Client.from_config()
    client.logout()
    config.access_token = config.refresh_token = config.api_token = None
    save_config(config)
    console.print("logged out")


@handle_errors
def whoami(as_json: JsonOpt = False) -> None:
    """Show who you are logged in as, and where."""
    client = Client.from_config()
    me = client.me()
    if as_json:
        print_json(me)
    else:
        console.print(f"{me.get('email')} on {client.server}", highlight=False)


@tokens_app.command("create")
@handle_errors
def tokens_create(
    name: str,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope", "-s", help="read, run, deploy, predict, admin (repeatable; default read)."
        ),
    ] = None,
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="Days until it expires.")
    ] = None,
) -> None:
    """Create an API token; it is shown once."""
    body = Client.from_config().create_api_token(
        name, scopes=list(scope or []) or None, expires_in_days=expires_days
    )
    token = body.get("token") or body.get("value") or body.get("api_token")
    scopes = ", ".join(body.get("scopes") or [])
    console.print(
        f"API token {name!r} [{scopes}] (shown once): {token}", highlight=False, markup=False
    )


@tokens_app.command("revoke")
@handle_errors
def tokens_revoke(
    token: Annotated[str, typer.Argument(help="Token id (or a unique prefix), or its name.")],
) -> None:
    """Revoke an API token: anything using it stops working at once."""
    client = Client.from_config()
    rows = client.list_api_tokens()
    named = [r for r in rows if r.get("name") == token]
    token_id = (
        str(named[0]["id"])
        if len(named) == 1
        else pick("API token", token, ((str(r["id"]), str(r.get("name", ""))) for r in rows))
    )
    client.revoke_api_token(token_id)
    console.print(f"API token {token_id} revoked", highlight=False)


@tokens_app.command("list")
@handle_errors
def tokens_list(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """List your API tokens (never their values)."""
    rows = Client.from_config().list_api_tokens()
    if as_json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                ("id", "id"),
                ("name", "name"),
                ("scopes", "scopes"),
                ("created", "created_at"),
                ("last used", "last_used_at"),
                ("expires", "expires_at"),
            ],
            empty="no API tokens: aidp tokens create NAME",
            wide=wide,
        )


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
    Client.from_config().set_secret(name, value)
    console.print(f"secret {name} stored", highlight=False)


@secrets_app.command("list")
@handle_errors
def secrets_list(as_json: JsonOpt = False) -> None:
    """List the names of your secrets."""
    names = [
        s if isinstance(s, str) else s.get("name") for s in Client.from_config().list_secrets()
    ]
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
    Client.from_config().delete_secret(name)
    console.print(f"secret {name} deleted", highlight=False)
