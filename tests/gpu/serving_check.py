"""GPU check of LLM serving (issue 15), by hand on a CUDA machine; no download needed.

    python tests/gpu/serving_check.py [--layers 24] [--tokens 128] [--engine auto]

Builds a Qwen2-shaped model with random weights (hidden 896, 24 layers: ~0.4 B parameters
with the tiny chat tokenizer of ``tests/support/tiny_chat_model.py``), starts the
inference server exactly as a deployment does (``services/trainer/model_server/server.py``,
``--engine auto``: vLLM's OpenAI server when ``vllm`` imports, else transformers on the
GPU) and speaks the OpenAI API to it with the standard library only:

- ``GET /v1/models``; a chat completion of ``--tokens`` tokens (tokens/s from ``usage``);
- a streamed chat completion: time to first token, chunks, tokens/s;
- a bad body answers 400 in the OpenAI shape.

Prints the engine, the figures, and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.tiny_chat_model import make_tiny_chat_model  # noqa: E402

SERVER = ROOT / "services" / "trainer" / "serving" / "server.py"


def build_model(dest: Path, layers: int) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM  # type: ignore[attr-defined]

    make_tiny_chat_model(dest)  # tokenizer, chat template, generation config
    for f in dest.glob("*.safetensors"):
        f.unlink()
    tok = json.loads((dest / "config.json").read_text())
    config = Qwen2Config(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=layers,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=tok["vocab_size"],
        max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tok.get("bos_token_id"), eos_token_id=tok.get("eos_token_id"),
        pad_token_id=tok.get("pad_token_id"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def stream(port: int, body: dict[str, Any]) -> tuple[float, int, dict[str, Any] | None, float]:
    """(time to first content, content chunks, usage, total seconds) of a streamed chat."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})  # fmt: skip
    response = conn.getresponse()
    assert response.status == 200, response.read()[:500]
    first, chunks, usage, buffer = 0.0, 0, None, b""
    while piece := response.read1(65536):
        buffer += piece
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            data = event.decode().removeprefix("data: ")
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    first = first or time.perf_counter() - started
    conn.close()
    return first, chunks, usage, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "vllm"])
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"cuda: {torch.cuda.is_available()} ({gpu})")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        n = build_model(model_dir, args.layers)
        print(f"model: {n / 1e6:.0f} M parameters (random, bf16)")
        port_file = Path(tmp) / "port.json"
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--model-dir", str(model_dir), "--name", "model-1",
             "--task", "chat", "--engine", args.engine, "--port", "0", "--port-file",
             str(port_file)],
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                 "PYTHONPATH": str(ROOT)},  # the repository's modules, as when staged
        )  # fmt: skip
        try:
            started = time.monotonic()
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() - started > 900:
                    print("FAIL: the server did not start")
                    return 1
                time.sleep(0.5)
            port = json.loads(port_file.read_text())["port"]
            print(f"server up in {time.monotonic() - started:.1f}s")
            status, models = call(port, "GET", "/v1/models")
            print(f"models: {status} {[m['id'] for m in models.get('data', [])]}")
            if status != 200:
                failures.append("models")
            messages = [{"role": "user", "content": "Tell me about the sky number 3."}]
            body = {"model": "model-1", "messages": messages, "max_tokens": args.tokens,
                    "temperature": 1.0, "seed": 1}  # fmt: skip
            call(port, "POST", "/v1/chat/completions", {**body, "max_tokens": 4})  # warm up
            t0 = time.perf_counter()
            status, answer = call(port, "POST", "/v1/chat/completions", body)
            seconds = time.perf_counter() - t0
            if status != 200:
                failures.append(f"chat {status}: {answer}")
            else:
                tokens = answer["usage"]["completion_tokens"]
                print(f"chat: {tokens} tokens in {seconds:.2f}s = {tokens / seconds:.1f} tokens/s"
                      f" ({answer['choices'][0]['finish_reason']})")  # fmt: skip
            ttft, chunks, usage, total = stream(
                port, {**body, "stream": True, "stream_options": {"include_usage": True}}
            )
            tokens = (usage or {}).get("completion_tokens", 0)
            print(f"stream: first token {ttft * 1000:.1f} ms, {chunks} chunks, {tokens} tokens "
                  f"in {total:.2f}s = {tokens / total:.1f} tokens/s")  # fmt: skip
            if chunks < 2 or not usage:
                failures.append("stream")
            status, error = call(port, "POST", "/v1/chat/completions", {**body, "top_p": 7})
            print(f"bad body: {status} {error}")
            if status != 400 or "error" not in (error or {}):
                failures.append("bad body")
        finally:
            proc.terminate()
            proc.wait(30)
    print("FAILED: " + "; ".join(failures) if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
