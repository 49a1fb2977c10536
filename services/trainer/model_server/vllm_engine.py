"""vLLM's OpenAI server as the engine of an LLM deployment (a CUDA node with ``vllm``
importable; :func:`~services.trainer.model_server.llm.load_engine` chooses it). Staged beside
``serving_llm.py`` as ``serving_vllm_engine.py``: standard library only at import."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

try:  # on a node: staged beside this file
    import serving_llm as llm  # type: ignore[import-not-found]
    import serving_openai_answers as answers  # type: ignore[import-not-found]
    import serving_openai_wire as wire  # type: ignore[import-not-found]
except ImportError:  # in the repository
    from services.trainer.model_server import llm
    from services.trainer.model_server import openai_answers as answers
    from services.trainer.model_server import openai_wire as wire

__all__ = ["VLLMEngine", "vllm_argv"]

#: The LoRA ranks vLLM accepts as ``--max-lora-rank``.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_argv(
    *,
    python: str,
    model_dir: str,
    name: str,
    port: int,
    adapter: dict[str, Any] | None = None,
    gpus: int = 1,
    max_model_len: int | None = None,
) -> list[str]:
    """The command line of vLLM's OpenAI server for this deployment.

    Without an adapter the model is served as ``name``; with one the base is served as
    ``<name>-base`` and the adapter as ``name`` (vLLM LoRA). Never remote code; safetensors
    only; loopback only (the inference server in front of it is the way in)."""
    argv = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load-format",
        "safetensors",
        "--generation-config",
        "auto",
    ]
    if adapter is None:
        argv += ["--model", model_dir, "--served-model-name", name]
    else:
        rank = int(adapter.get("rank") or 8)
        max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])
        argv += [
            "--model",
            str(adapter["base"]),
            "--served-model-name",
            f"{name}-base",
            "--enable-lora",
            "--lora-modules",
            f"{name}={model_dir}",
            "--max-lora-rank",
            str(max_rank),
        ]
    if gpus > 1:
        argv += ["--tensor-parallel-size", str(gpus)]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    return argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMEngine:
    """vLLM's OpenAI server as a child process; ``/v1`` requests are passed through."""

    def __init__(
        self, model_dir: str, name: str, *, base_dir: str | None = None, start_timeout: float = 1800
    ) -> None:
        import torch

        self.name = name
        self.port = _free_port()
        adapter = llm.adapter_info(model_dir, base_dir)
        argv = vllm_argv(
            python=sys.executable,
            model_dir=model_dir,
            name=name,
            port=self.port,
            adapter=adapter,
            gpus=max(1, torch.cuda.device_count()),
        )
        self.proc = subprocess.Popen(argv, stdout=sys.stdout, stderr=sys.stderr)
        deadline = time.monotonic() + start_timeout
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("vLLM did not become ready in time")
            time.sleep(1)

    def _ready(self) -> bool:
        try:
            status, _, _ = self._call("GET", "/health", None, timeout=2)
        except OSError:
            return False
        return status == 200

    def _call(
        self, method: str, path: str, body: Any, *, timeout: float = llm.STREAM_TIMEOUT
    ) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            conn.close()

    def models(self) -> dict[str, Any]:
        status, _, data = self._call("GET", "/v1/models", None)
        return dict(json.loads(data)) if status == 200 else answers.models_list(self.name, 0)

    def openai(self, path: str, body: Any) -> llm.Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=llm.STREAM_TIMEOUT)
        conn.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        content_type = response.getheader("Content-Type", "application/json")
        if "text/event-stream" not in content_type:
            data = response.read()
            conn.close()
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = wire.error_body(
                    "vLLM answered a body that is not JSON", type="server_error"
                )
            if response.status >= 400 and isinstance(parsed, dict) and "error" not in parsed:
                # older vLLM: {"object": "error", "message", "type", "param", "code"}
                parsed = wire.error_body(
                    str(parsed.get("message") or f"vLLM answered {response.status}"),
                    type=str(parsed.get("type") or "invalid_request_error"),
                    param=parsed.get("param"),
                    code=str(parsed["code"]) if parsed.get("code") is not None else None,
                )
            return llm.Answer(status=response.status, body=parsed)

        def relay() -> Iterator[bytes]:
            try:
                while chunk := response.read1(65536):
                    yield chunk
            finally:
                conn.close()

        return llm.Answer(status=response.status, stream=relay(), content_type="text/event-stream")

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        results = []
        for text in texts:
            body = {"model": self.name, "prompt": text, "max_tokens": llm.PREDICT_MAX_TOKENS}
            status, _, data = self._call("POST", "/v1/completions", {**body, "temperature": 0})
            if status != 200:
                raise ValueError(f"vLLM answered {status}: {data[:200]!r}")
            results.append({"generated_text": text + json.loads(data)["choices"][0]["text"]})
        return results

    def close(self) -> None:
        self.proc.terminate()
