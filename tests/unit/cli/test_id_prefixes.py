"""Ids by unique prefix (issue 16 item 6): one match is used, several are a usage error
listing them, none is 404; projects by name prefer your own; tables shorten ids to a
unique prefix and ``--wide`` prints them whole."""

from __future__ import annotations

import httpx
import pytest
from rich.console import Console

from cli import output
from cli.output import EXIT_USAGE, handle_errors, print_table
from cli.resolve import AmbiguousId, pick, resolve_project, resolve_run, short_ids
from cli.sdk import ApiError, Client

P1 = "11111111-aaaa-4000-8000-000000000001"
P2 = "22222222-bbbb-4000-8000-000000000002"
R1 = "abcdef01-0000-4000-8000-000000000001"
R2 = "abcdef02-0000-4000-8000-000000000002"
R3 = "99999999-0000-4000-8000-000000000003"


def _server() -> httpx.MockTransport:
    projects = [
        {"id": P1, "name": "demo", "role": "owner"},
        {"id": P2, "name": "demo", "role": "editor"},  # someone else's, shared with you
    ]
    runs = {P1: [{"id": R1, "number": 1}, {"id": R3, "number": 2}], P2: [{"id": R2, "number": 1}]}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/projects":
            return httpx.Response(200, json=projects)
        for pid, rows in runs.items():
            if path == f"/api/projects/{pid}/runs":
                return httpx.Response(200, json=rows)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "nope"}})

    return httpx.MockTransport(handle)


@pytest.fixture
def client() -> Client:
    return Client("http://x", api_token="aidp_test", transport=_server())


def test_unique_prefix_resolves(client: Client) -> None:
    assert resolve_run(client, "999") == R3
    assert resolve_run(client, "ABCDEF01") == R1  # case does not matter
    assert resolve_run(client, R2) == R2  # a whole id is used as given


def test_ambiguous_prefix_lists_the_matches(client: Client) -> None:
    with pytest.raises(AmbiguousId) as caught:
        resolve_run(client, "abcdef0")
    message = str(caught.value)
    assert "matches 2 runs" in message and R1 in message and R2 in message
    assert "demo #1" in message and caught.value.status == 400


def test_unknown_prefix_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        resolve_run(client, "0000")
    assert caught.value.status == 404


def test_projects_by_name_prefer_your_own(client: Client) -> None:
    assert resolve_project(client, "demo")["id"] == P1
    assert client.find_project("2222")["id"] == P2
    with pytest.raises(ApiError):
        resolve_project(client, "nothing")


def test_ambiguous_is_a_usage_error() -> None:
    @handle_errors
    def command() -> None:
        pick("run", "ab", [("abc", "x"), ("abd", "y")])

    with pytest.raises(SystemExit) as caught:
        try:
            command()
        except BaseException as exc:  # typer.Exit
            raise SystemExit(getattr(exc, "exit_code", 1)) from None
    assert caught.value.code == EXIT_USAGE


def test_short_ids() -> None:
    assert short_ids([R1, R3]) == 8
    assert short_ids([R1, R2]) == 8  # they differ at the 8th character
    assert short_ids(["abcdefghij1", "abcdefghij2"]) == 11


def test_tables_shorten_ids_unless_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(width=200, record=True)
    monkeypatch.setattr(output, "console", out)
    rows = [{"id": R1, "name": "a"}, {"id": R3, "name": "b"}]
    print_table(rows, [("id", "id"), ("name", "name")])
    text = out.export_text()
    assert "abcdef01 " in text and R1 not in text
    print_table(rows, [("id", "id"), ("name", "name")], wide=True)
    wide = out.export_text()
    assert R1 in wide and R3 in wide
