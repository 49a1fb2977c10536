"""``aidp members add`` and ``aidp invitations`` against the real gateway server, under a
pseudo-terminal: adding a member invites (nothing is shared until the invitee accepts), and
a project name from another user prints as text (markup literal, no escape sequence)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.unit.cli.test_terminal_output import _run_in_pty
from tests.unit.gateway.conftest import SPEC, Served, auth, served  # noqa: F401 - fixtures

HOSTILE_NAME = "demo [/bold] [link=http://evil.example]x[/link]\x1b]0;pwned\x07\x1b[31m red"
SHOWN_NAME = "demo [/bold] [link=http://evil.example]x[/link] red"


def _env(server: Served, tmp_path: Path, token: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("AIDP_TOKEN", "AIDP_SERVER")},
        "AIDP_CONFIG": str(tmp_path / "cli" / "config"),
        "AIDP_SERVER": server.url,
        "AIDP_TOKEN": token,
        "TERM": "xterm-256color",
        "COLUMNS": "240",
    }


def _assert_safe(text: str) -> None:
    assert "Traceback" not in text, text
    assert "\x1b]" not in text and "pwned" not in text  # no OSC (title, hyperlink)
    assert "\x1b[31m" not in text and "\x07" not in text


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    code, out = await asyncio.to_thread(_run_in_pty, list(args), env)
    return code, out.decode("utf-8", "replace")


async def test_members_add_invites_and_the_invitee_accepts(
    served: Served,  # noqa: F811 - the gateway's fixture, imported above
    tmp_path: Path,
) -> None:
    _, owner = served.login()
    created = await served.client.post(
        "/api/projects", json={"name": HOSTILE_NAME, "spec": SPEC}, headers=owner
    )
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    bob_id, bob_email = served.auth.user()
    bob_token = served.auth.token(bob_id, bob_email)
    alice = _env(served, tmp_path / "alice", owner["Authorization"].removeprefix("Bearer "))
    bob = _env(served, tmp_path / "bob", bob_token)

    code, text = await _cli(alice, "members", "add", project_id, bob_email, "--role", "editor")
    assert code == 0, text
    assert f"invited {bob_email} as editor to {SHOWN_NAME}" in text, text
    _assert_safe(text)
    bob_headers = {"Authorization": f"Bearer {bob_token}"}
    assert (await served.client.get("/api/projects", headers=bob_headers)).json() == []

    code, text = await _cli(bob, "invitations", "list")
    assert code == 0 and SHOWN_NAME in text and "editor" in text, text
    _assert_safe(text)
    code, text = await _cli(bob, "invitations", "accept", project_id)
    assert code == 0 and f"joined as editor: {SHOWN_NAME}" in text, text
    _assert_safe(text)
    joined = (await served.client.get("/api/projects", headers=bob_headers)).json()
    assert [(p["id"], p["role"]) for p in joined] == [(project_id, "editor")]

    # nothing left to accept; a usage error is one readable line, not a traceback
    code, text = await _cli(bob, "invitations", "accept", project_id)
    assert code == 1 and "no pending invitation" in text, text
    code, text = await _cli(bob, "members", "add", project_id, "x@example.com")
    assert code == 1 and "owner" in text.lower(), text
