"""The OpenAI-compatible endpoint of an LLM deployment, end to end (``aidp up``, real HTTP).

A tiny chat Llama and a chat dataset on the test hub; ``task: chat, method: lora`` trains
an adapter, registers it and deploys it (served on its base with peft); then the official
``openai`` client with the platform token as ``api_key`` lists the model, completes a chat
and a prompt, streams (≥ 2 chunks, usage in the last), sees OpenAI-shaped 400s for bad
bodies; another user's token gets ``openai.NotFoundError`` and a missing token
``openai.AuthenticationError``. ``aidp chat -m`` answers through the same endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.platform.conftest import REPO, embedded_platform
from tests.e2e.web.test_web_flow import _ensure_ui_built as ensure_ui_built
from tests.support.hf_server import HubServer
from tests.support.pipeline import ApiUser
from tests.support.tiny_chat_model import chat_spec, publish_tiny_chat_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def chat_hub(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer() as server:
        publish_tiny_chat_project(server, tmp_path / "mirror-src")
        yield server


@pytest.fixture
def platform(tmp_path: Path, chat_hub: HubServer) -> Iterator[str]:
    ensure_ui_built()  # the chat box is checked in the browser too
    with embedded_platform(tmp_path / "data", chat_hub, tmp_path / "aidp.log") as url:
        yield url


def deployed(user: ApiUser, run_id: str) -> str:
    events = user.events(run_id)
    event = next(e for e in events if e["event"]["type"] == "ModelDeployed")
    return str(event["event"]["payload"]["deployment_id"])


def test_lora_chat_model_serves_the_openai_api(platform: str, tmp_path: Path) -> None:
    alice = ApiUser(platform)
    project = alice.create_project(chat_spec("openai-e2e", method="lora", deploy=True))
    run = alice.wait_for_run(project["current_run_id"], timeout=900)
    log = tmp_path / "aidp.log"
    assert run["status"] == "deployed", log.read_text()[-6000:]
    dep_id = deployed(alice, run["id"])
    models = alice.http.get(f"/api/projects/{project['id']}/models").json()
    assert models[0]["lineage"].get("method") == "lora", models[0]

    base_url = f"{platform}/api/deployments/{dep_id}/v1"
    client = openai.OpenAI(base_url=base_url, api_key=alice.token, max_retries=0, timeout=120)
    listed = client.models.list()
    assert len(listed.data) == 1
    name = listed.data[0].id

    chat = client.chat.completions.create(
        model=name,
        messages=[
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "What colour is the apple number 3?"},
        ],
        max_tokens=12,
        temperature=0,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.prompt_tokens > 10
    assert 1 <= chat.usage.completion_tokens <= 12

    done = client.completions.create(model=name, prompt="The sky number 2 is", max_tokens=5)
    assert done.choices[0].finish_reason in ("stop", "length") and done.usage is not None

    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": "Tell me about the leaf number 9."}],
        max_tokens=40,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    ):
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
        usage = chunk.usage or usage
    assert len(pieces) >= 2, pieces
    assert usage is not None and usage.completion_tokens >= 2

    # the raw stream is SSE: data lines, [DONE] last
    with httpx.stream(
        "POST",
        f"{base_url}/chat/completions",
        headers={"Authorization": f"Bearer {alice.token}"},
        json={"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": True,
              "max_tokens": 4},
        timeout=120,
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"

    # bad bodies: OpenAI's shape, 400, never a 500
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}],
                                       top_p=5)  # fmt: skip
    assert bad.value.body["param"] == "top_p"  # type: ignore[index]
    r = alice.http.post(f"/api/deployments/{dep_id}/v1/chat/completions", content=b"[1, 2")
    assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])

    # another user: the deployment does not exist for them; no token: 401
    mallory = ApiUser(platform)
    other = openai.OpenAI(base_url=base_url, api_key=mallory.token, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.models.list()
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}])
    anonymous = openai.OpenAI(base_url=base_url, api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()

    # the project page: a chat box answers, streamed, with the openai snippet beside it
    browser = subprocess.run(
        ["node", str(REPO / "tests" / "e2e" / "web" / "chat.mjs"), platform, alice.email,
         "Correct-horse-42!", project["id"], str(REPO / "tests" / "e2e" / "artifacts" / "chat")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert browser.returncode == 0, browser.stdout[-2000:] + browser.stderr[-2000:]
    seen = json.loads(browser.stdout.strip().splitlines()[-1])
    assert seen["reply"] and not seen["errors"], seen
    assert f"/api/deployments/{dep_id}/v1" in seen["snippet"] and "OpenAI(" in seen["snippet"]

    # the CLI: one message, the reply streamed to stdout
    config = tmp_path / "cli-config"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIDP_")},
        "AIDP_SERVER": platform,
        "AIDP_TOKEN": alice.token,
        "AIDP_CONFIG": str(config),
    }
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "chat", dep_id, "-m", "What colour is the sky?",
         "--max-tokens", "6"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "chat", dep_id, "--max-tokens", "4"],
        cwd=REPO, env=env, input="hello\n/reset\nhi again\n", capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") >= 2  # two replies, one line each at least
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "chat", "no-such-deployment", "-m", "x"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "not found" in out.stderr
