"""Usage errors exit 2 with a readable message; no server is needed to get there."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.config import Config, save_config
from cli.main import app
from tests.support.infra import free_port

runner = CliRunner()


def _run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.fixture
def logged_in_nowhere(config_file: Path) -> Path:
    """Logged in (API token) to a server that is not running."""
    save_config(Config(server=f"http://127.0.0.1:{free_port()}", api_token="aidp_x"))
    return config_file


def test_unknown_command_and_option(config_file: Path) -> None:
    assert _run("frobnicate")[0] == 2
    assert _run("projects", "--colour")[0] == 2


def test_predict_needs_input(config_file: Path) -> None:
    code, out = _run("predict", "dep-1")
    assert code == 2 and "--input" in out


def test_missing_spec_file(config_file: Path, tmp_path: Path) -> None:
    code, out = _run("run", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read spec" in out


def test_invalid_spec_names_the_field(config_file: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: demo\nmodel: hf://a/b\ndataset: hf://datasets/c/d\nresources: {gpus: 2}\n"
    )
    code, out = _run("run", str(spec))
    assert code == 2 and "resources.gpus" in out


def test_not_logged_in(config_file: Path) -> None:
    code, out = _run("projects")
    assert code == 2 and "aidp login" in out


def test_server_down_is_exit_1_with_hint(logged_in_nowhere: Path) -> None:
    code, out = _run("projects")
    assert code == 1 and "cannot reach the aidp server" in out and "aidp up" in out


def test_bad_api_token_format(config_file: Path) -> None:
    code, out = _run("login", "--server", "http://127.0.0.1:1", "--token", "nope")
    assert code == 2 and "aidp_" in out


def test_share_role_validated(logged_in_nowhere: Path) -> None:
    code, out = _run("share", "p", "a@b.c", "--role", "admin")
    assert code == 2 and "viewer, editor or owner" in out


def test_serve_refuses_an_unknown_service(config_file: Path) -> None:
    code, out = _run("serve", "scheduler")
    assert code == 2 and "unknown service 'scheduler'" in out and "gateway" in out
