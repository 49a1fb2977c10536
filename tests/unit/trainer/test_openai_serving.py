"""An LLM deployment through the trainer's OpenAI relay, driven by the official client.

The tiny chat Llama is registered as a ``chat`` model (no training), deployed in its
sandbox, and the ``openai`` client talks to ``/internal/deployments/{id}/v1`` over the
in-process streaming transport (``shared.asgi_stream``), as the gateway does in embedded
mode: the model is listed, a chat and a prompt are completed, a stream arrives in pieces
(the first well before the last), stop sequences cut, bad bodies are 400 in the OpenAI shape.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from services.trainer.models import Deployment, ModelVersion
from shared.asgi_stream import StreamingASGITransport
from tests.support.service_auth import as_service
from tests.support.tiny_chat_model import make_tiny_chat_model
from tests.unit.trainer.conftest import Harness, put_dir, running_trainer

pytestmark = pytest.mark.slow


def register_chat_model(trainer: Harness, model_dir: Path) -> uuid.UUID:
    key = put_dir(trainer.store, model_dir, source="hf://aidp-tests/tiny-chat-llama")
    with trainer.app.state.runtime.db.session() as session:
        model = ModelVersion(
            project_id=uuid.uuid4(), run_id=uuid.uuid4(), version=1, task="chat", manifest_key=key
        )
        session.add(model)
        session.commit()
        return model.id


def status_of(trainer: Harness, dep_id: uuid.UUID) -> str:
    with trainer.app.state.runtime.db.session() as session:
        dep = session.get(Deployment, dep_id)
        return dep.status if dep else "missing"


@pytest.fixture
async def llm(
    tmp_path: Path, tiny_files: tuple[Path, Path]
) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient, str]]:
    model_dir = make_tiny_chat_model(tmp_path / "tiny-chat")
    async with running_trainer(tmp_path, tiny_files) as trainer:
        model_id = register_chat_model(trainer, model_dir)
        http = httpx.AsyncClient(
            transport=StreamingASGITransport(trainer.app),
            base_url="http://trainer",
            auth=as_service("trainer"),
            timeout=120,
        )
        async with http:
            r = await http.post(f"/internal/models/{model_id}/deploy")
            assert r.status_code == 202, r.text
            dep_id = uuid.UUID(r.json()["deployment_id"])
            await trainer.events.wait_for(
                lambda: status_of(trainer, dep_id) in ("running", "failed"),
                timeout=180,
                what="deployment running",
            )
            assert status_of(trainer, dep_id) == "running"
            client = openai.AsyncOpenAI(
                base_url=f"http://trainer/internal/deployments/{dep_id}/v1",
                api_key="unused-here",  # the trainer trusts the gateway's service token
                http_client=http,
                max_retries=0,
            )
            yield client, http, str(dep_id)
            await http.delete(f"/internal/deployments/{dep_id}")


async def test_the_openai_client_lists_completes_and_streams(
    llm: tuple[openai.AsyncOpenAI, httpx.AsyncClient, str],
) -> None:
    client, http, dep_id = llm
    models = await client.models.list()
    assert [m.id for m in models.data] == ["model-1"]

    chat = await client.chat.completions.create(
        model="model-1",
        messages=[{"role": "user", "content": "What colour is the apple number 3?"}],
        max_tokens=8,
        temperature=0,
    )
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason in ("stop", "length")
    usage = chat.usage
    assert usage is not None and usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    done = await client.completions.create(model="model-1", prompt="The sky", max_tokens=6, seed=1)
    assert done.object == "text_completion" and done.usage is not None
    assert done.usage.completion_tokens <= 6

    # a stream: role first, content pieces as they come, the reason, usage, [DONE]
    started = time.monotonic()
    arrivals: list[float] = []
    pieces: list[str] = []
    reasons = []
    usage_seen = None
    stream = await client.chat.completions.create(
        model="model-1",
        messages=[{"role": "user", "content": "Tell me about the sky."}],
        max_tokens=60,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            usage_seen = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
                arrivals.append(time.monotonic() - started)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert len(pieces) >= 2, pieces
    assert len(reasons) == 1
    assert usage_seen is not None and usage_seen.completion_tokens >= len(pieces)
    if usage_seen.completion_tokens >= 40:  # long enough to tell a stream from a buffer
        assert arrivals[0] < arrivals[-1] * 0.6, arrivals

    # stop: the same sampled reply (same seed) ends before the stop sequence, never sent
    full = "".join(pieces)
    assert len(full) >= 6, full
    cut = full[len(full) // 2 : len(full) // 2 + 2]
    stopped = await client.chat.completions.create(
        model="model-1",
        messages=[{"role": "user", "content": "Tell me about the sky."}],
        max_tokens=60,
        seed=5,
        stop=[cut, "never-in-the-output-xyz"],
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == full[: full.index(cut)]

    # bad input: OpenAI's 400 with the parameter named, never a 500
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="model-1", messages=[], max_tokens=2)
    assert bad.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="model-1", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    r = await http.post(
        f"/internal/deployments/{dep_id}/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = await http.post(f"/internal/deployments/{dep_id}/v1/embeddings", json={})
    assert r.status_code in (404, 422)

    # a client that leaves mid-stream frees the model for the next request
    async with http.stream(
        "POST",
        f"/internal/deployments/{dep_id}/v1/completions",
        json={"model": "model-1", "prompt": "sky", "max_tokens": 200, "stream": True},
    ) as response:
        async for _ in response.aiter_bytes():
            break
    again = await client.completions.create(model="model-1", prompt="sky", max_tokens=2)
    assert again.usage is not None and again.usage.completion_tokens >= 1
