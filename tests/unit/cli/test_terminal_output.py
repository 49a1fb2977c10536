"""Strings from runs reach the terminal as text (issue 13): the real ``aidp`` under a
pseudo-terminal, against the real gateway server, prints Rich markup literally and no
escape sequence; ``aidp logs -f`` on a finished run prints its stored lines and how it
ended, then exits (1 for a failed run)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cli.text import printable
from shared.events import TrainingFailed, TrainingLog, TrainingStarted, new_event
from tests.unit.gateway.conftest import Served, auth, served, wait_until  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[3]

HOSTILE = [
    "<s>[INST] hello [/INST] hi there",
    "done [/bold] and [link=http://evil.example]x[/link]",
    "\x1b[2J\x1b[31mred\x1b[0m screen",
    "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\",
    "\x1b]0;pwned title\x07title",
    "bell\x07 and c1 \x9b31m",
]
EXPECTED = [
    "<s>[INST] hello [/INST] hi there",
    "done [/bold] and [link=http://evil.example]x[/link]",
    "red screen",
    "click me",
    "title",
    "bell and c1 ",
]


def test_printable_strips_escapes_and_keeps_markup_literal() -> None:
    assert [printable(line) for line in HOSTILE] == EXPECTED


def _run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as stdout/stderr; return its code and output."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    return code, bytes(out)


async def test_logs_follow_on_finished_run_prints_text_and_exits(
    served: Served,  # noqa: F811 - the gateway's fixture, imported above
    tmp_path: Path,
) -> None:
    _, headers = served.login()
    project = await served.create_project(headers)
    pid, rid = uuid.UUID(project["id"]), uuid.UUID(project["current_run_id"])
    await served.publish(
        new_event(TrainingStarted(world_size=1, nodes=["n0"]), project_id=pid, run_id=rid)
    )
    await served.publish(
        new_event(TrainingLog(node="n0", lines=HOSTILE), project_id=pid, run_id=rid)
    )
    await served.publish(
        new_event(
            TrainingFailed(reason="boom [/bold] \x1b]8;;http://x\x1b\\", exit_code=1),
            project_id=pid,
            run_id=rid,
        )
    )

    async def failed() -> bool:
        r = await served.client.get(f"/api/runs/{rid}", headers=headers)
        return r.json().get("status") == "failed"

    await wait_until(failed)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("AIDP_TOKEN", "AIDP_SERVER")},
        "AIDP_CONFIG": str(tmp_path / "cli" / "config"),
        "AIDP_SERVER": served.url,
        "AIDP_TOKEN": headers["Authorization"].removeprefix("Bearer "),
        "TERM": "xterm-256color",
        "COLUMNS": "200",
    }
    for args in (["logs", str(rid), "-f"], ["logs", str(rid)]):
        code, out = await asyncio.to_thread(_run_in_pty, args, env)
        text = out.decode("utf-8", "replace")
        if "-f" in args:  # the stored lines, then how the run ended, as following it would
            assert code == 1, text
            assert "failed: boom [/bold]" in text, text
        else:
            assert code == 0, text
        assert "Traceback" not in text
        for line in EXPECTED:
            assert line.strip() in text, (line, text)
        assert "\x1b]" not in text and "evil.example/" not in text  # no OSC 8, no title
        assert "\x1b[2J" not in text and "\x1b[31m" not in text and "\x07" not in text


def test_follow_renderers_print_log_lines_and_reasons_as_text() -> None:
    """``aidp run --follow``'s renderers (Live on a terminal, plain elsewhere)."""
    from io import StringIO

    from rich.console import Console

    from cli.render import LiveRenderer, PlainRenderer
    from cli.runview import RunView

    for make in (LiveRenderer, PlainRenderer):
        out = StringIO()
        console = Console(file=out, force_terminal=True, width=200, color_system="truecolor")
        renderer = make(console)
        renderer.update(RunView(run_id="r"), ["TrainingFailed: boom [/bold]"], HOSTILE)
        renderer.close()
        text = out.getvalue()
        assert "boom [/bold]" in text and "[/INST]" in text, text
        assert "\x1b]8;;http" not in text and "\x1b]0;" not in text and "\x1b[2J" not in text
