"""What the OpenAI-compatible endpoint adds: through the gateway against the engine called
directly, in the same run (issue 15).

``aidp up`` (embedded) trains and deploys the tiny chat Llama; the same inference server
(``serving/server.py`` in the deployment's sandbox) is called two ways: through the gateway
(token, authorisation, the trainer's relay, its socket) and directly on its Unix socket with
no platform in between — one engine, one process, so only the path differs. Requests
alternate between the two (keep-alive clients), three rounds:

- latency: a non-streamed chat completion of one token, p50 of each side; the difference
  is what the gateway, the trainer relay and the sandbox socket add (goal < 10 ms);
- time to first token: a streamed chat completion, from sending to the first content
  chunk; the difference of the p50s (goal < 20 ms).

Figures are printed per round; the goals are checked on the median of the rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.platform.conftest import embedded_platform
from tests.support.hf_server import HubServer
from tests.support.pipeline import ApiUser
from tests.support.tiny_chat_model import chat_spec, publish_tiny_chat_project

pytestmark = [pytest.mark.bench, pytest.mark.slow]

ROUNDS = 3
REQUESTS = int(os.environ.get("AIDP_BENCH_OPENAI_REQUESTS", "40"))


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[str]:
    with HubServer() as hub:
        publish_tiny_chat_project(hub, tmp_path / "mirror-src")
        with embedded_platform(tmp_path / "data", hub, tmp_path / "aidp.log") as url:
            yield url


def deploy_tiny(user: ApiUser, log: Path) -> str:
    """Train (two steps, full) and deploy; returns the deployment id."""
    spec = chat_spec("bench-openai", method="full", max_steps=2, deploy=True)
    del spec["train"]["args"]["lora_r"]  # a LoRA option: refused for method full
    project = user.create_project(spec)
    run = user.wait_for_run(project["current_run_id"], timeout=900)
    assert run["status"] == "deployed", log.read_text()[-4000:]
    events = user.events(run["id"])
    deployed = next(e for e in events if e["event"]["type"] == "ModelDeployed")
    return str(deployed["event"]["payload"]["deployment_id"])


@contextmanager
def engine_socket(data_dir: Path) -> Iterator[str]:
    """The deployed inference server's own socket, reached through a short link (a socket
    address holds 107 bytes); the caller is root, as the trainer that owns it."""
    (sock,) = [p for p in data_dir.rglob("server.sock") if p.is_socket()]
    with tempfile.TemporaryDirectory(prefix="aidp-b") as tmp:
        link = Path(tmp) / "s"
        link.symlink_to(sock)
        yield str(link)


def chat_body(model: str, *, stream: bool) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "What colour is the sky number 4?"}],
        "max_tokens": 1 if not stream else 4,
        "temperature": 0,
        "stream": stream,
    }


def latency(client: httpx.Client, url: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    r = client.post(url, json=body)
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    return elapsed


def first_token(client: httpx.Client, url: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line:
                if '"content":""' not in line:  # the role chunk carries no text
                    first = time.perf_counter() - started
    assert first is not None, "no content chunk"
    return first


def test_openai_overhead(platform: str, tmp_path: Path) -> None:
    user = ApiUser(platform)
    dep_id = deploy_tiny(user, tmp_path / "aidp.log")
    gateway_base = f"{platform}/api/deployments/{dep_id}/v1"
    direct_base = "http://engine/v1"
    auth = {"Authorization": f"Bearer {user.token}"}
    with engine_socket(tmp_path / "data") as sock:
        with (
            httpx.Client(headers=auth, timeout=60) as via_gateway,
            httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=60) as direct,
        ):
            model = via_gateway.get(f"{gateway_base}/models").json()["data"][0]["id"]
            assert direct.get(f"{direct_base}/models").json()["data"][0]["id"] == model
            sides = {"gateway": (via_gateway, gateway_base), "direct": (direct, direct_base)}
            for client, base in sides.values():  # warm up both paths
                for _ in range(3):
                    latency(client, f"{base}/chat/completions", chat_body(model, stream=False))
                    first_token(client, f"{base}/chat/completions", chat_body(model, stream=True))
            added_p50, added_ttft = [], []
            for round_no in range(1, ROUNDS + 1):
                lat: dict[str, list[float]] = {"gateway": [], "direct": []}
                ttft: dict[str, list[float]] = {"gateway": [], "direct": []}
                for _ in range(REQUESTS):
                    for side, (client, base) in sides.items():
                        url = f"{base}/chat/completions"
                        lat[side].append(latency(client, url, chat_body(model, stream=False)))
                        ttft[side].append(first_token(client, url, chat_body(model, stream=True)))
                p50 = {s: statistics.median(v) * 1000 for s, v in lat.items()}
                t50 = {s: statistics.median(v) * 1000 for s, v in ttft.items()}
                added_p50.append(p50["gateway"] - p50["direct"])
                added_ttft.append(t50["gateway"] - t50["direct"])
                print(
                    f"\nround {round_no}: latency p50 gateway {p50['gateway']:.1f} ms, direct "
                    f"{p50['direct']:.1f} ms, added {added_p50[-1]:.1f} ms; TTFT p50 gateway "
                    f"{t50['gateway']:.1f} ms, direct {t50['direct']:.1f} ms, added "
                    f"{added_ttft[-1]:.1f} ms"
                )
    median_p50, median_ttft = statistics.median(added_p50), statistics.median(added_ttft)
    print(
        f"OpenAI endpoint overhead over {ROUNDS} rounds of {REQUESTS}: added latency p50 "
        f"min/median/max {min(added_p50):.1f}/{median_p50:.1f}/{max(added_p50):.1f} ms "
        f"(goal < 10), added TTFT {min(added_ttft):.1f}/{median_ttft:.1f}/"
        f"{max(added_ttft):.1f} ms (goal < 20)"
    )
    assert median_p50 < 10.0
    assert median_ttft < 20.0
