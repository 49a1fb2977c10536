"""Language-model engines of the inference server (tasks ``causal-lm`` and ``chat``).

Both speak the OpenAI wire format (``openai_wire``) for ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions``, and answer the Open Inference ``/predict``:

- :class:`TransformersEngine` (CPU nodes, or wherever vLLM is missing): the model's own chat
  template (``tokenizer.apply_chat_template``), ``model.generate`` in a thread with a
  ``TextIteratorStreamer`` for streams, stop sequences cut on the text, one generation at
  a time. A LoRA adapter (``adapter_config.json`` in the model folder) is applied on its
  base with peft (``PeftModel.from_pretrained``) and merged for speed.
- ``VLLMEngine`` (``vllm_engine.py``; CUDA nodes with ``vllm`` importable): vLLM's own
  OpenAI server (``python -m vllm.entrypoints.openai.api_server``) on the node's loopback,
  adapters through ``--enable-lora --lora-modules``; requests are passed through as they are.

Staged beside ``server.py`` as ``serving_llm.py``; standard library plus torch,
transformers (and peft for adapters) from the node's environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:  # on a node: staged beside this file
    import serving_openai_answers as answers  # type: ignore[import-not-found]
    import serving_openai_wire as wire  # type: ignore[import-not-found]
except ImportError:  # in the repository
    from services.trainer.model_server import openai_answers as answers
    from services.trainer.model_server import openai_wire as wire

if TYPE_CHECKING:
    from services.trainer.model_server.vllm_engine import VLLMEngine

__all__ = [
    "LLM_TASKS",
    "Answer",
    "TransformersEngine",
    "adapter_info",
    "load_engine",
    "sse_answer",
]

LLM_TASKS = ("causal-lm", "chat")
DEFAULT_MAX_TOKENS = 512  # when a request names none (and the context allows it)
PREDICT_MAX_TOKENS = 16
STREAM_TIMEOUT = 600.0  # seconds a stream waits for the next token


@dataclass
class Answer:
    """What the HTTP handler sends: JSON (``body`` a dict) or a stream of bytes."""

    status: int = 200
    body: dict[str, Any] | None = None
    stream: Iterator[bytes] | None = None
    content_type: str = "application/json"


def adapter_info(model_dir: str, base_dir: str | None = None) -> dict[str, Any] | None:
    """The adapter in ``model_dir`` (its config and where its base lies), or None.

    The base is ``base_dir`` when given, else ``<model_dir>/base`` when it exists."""
    config_file = os.path.join(model_dir, "adapter_config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file) as fh:
        config = json.load(fh)
    base = base_dir or os.path.join(model_dir, "base")
    if not os.path.isfile(os.path.join(base, "config.json")):
        raise RuntimeError(
            f"{model_dir} holds a LoRA adapter but its base model is missing "
            "(expected --base-model-dir or a base/ folder)"
        )
    return {"config": config, "base": base, "rank": int(config.get("r") or 8)}


# -- the transformers engine -----------------------------------------------------------------


class TransformersEngine:
    """A causal LM held in memory; one generation at a time (the lock)."""

    def __init__(self, model_dir: str, name: str, *, base_dir: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.created = int(time.time())
        self.torch = torch
        self.lock = threading.Lock()
        safe: dict[str, Any] = {"trust_remote_code": False, "local_files_only": True}
        adapter = adapter_info(model_dir, base_dir)
        weights = adapter["base"] if adapter else model_dir
        tokenizer_dir = model_dir
        if adapter and not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
            tokenizer_dir = weights
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, **safe)
        # a CUDA node without vLLM: the GPU, in bf16
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda":
            safe["dtype"] = torch.bfloat16
        model: Any = AutoModelForCausalLM.from_pretrained(weights, use_safetensors=True, **safe)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, model_dir, is_trainable=False)
            model = model.merge_and_unload()  # one matmul per layer again
        self.model = model.to(self.device).eval()
        config = self.model.config
        self.context = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or min(int(getattr(self.tokenizer, "model_max_length", 2048) or 2048), 1 << 20)
        )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids), 0)

    # -- the API -----------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return answers.models_list(self.name, self.created)

    def openai(self, path: str, body: Any) -> Answer:
        """Answer ``/v1/...`` (OpenAIError for a bad request)."""
        if path == "/v1/chat/completions":
            return self._chat(wire.parse_chat(body, served=self.name))
        if path == "/v1/completions":
            return self._completion(wire.parse_completion(body, served=self.name))
        raise wire.OpenAIError(f"no route {path}", status=404, code="not_found")

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Open Inference: each text continued greedily, prompt included."""
        results = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            params = wire.GenerationParams(max_tokens=PREDICT_MAX_TOKENS, temperature=0.0)
            pieces = "".join(self.generate(ids, params))
            results.append({"generated_text": self._decode(ids) + pieces})
        return results

    # -- prompts -----------------------------------------------------------------------------

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise wire.OpenAIError(
                "this model has no chat template; use /v1/completions with a prompt",
                param="messages",
                code="no_chat_template",
            )
        try:
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # the template's own raise_exception, a jinja error
            raise wire.OpenAIError(
                f"the model's chat template refused the messages: {exc}", param="messages"
            ) from None
        return list(self.tokenizer(str(text), add_special_tokens=False)["input_ids"])

    def _budget(self, prompt_ids: list[int], params: wire.GenerationParams) -> int:
        left = self.context - len(prompt_ids)
        if left <= 0 or (params.max_tokens is not None and params.max_tokens > left):
            wanted = params.max_tokens or 1
            raise wire.OpenAIError(
                f"This model's maximum context length is {self.context} tokens. However, you "
                f"requested {len(prompt_ids) + wanted} tokens ({len(prompt_ids)} in the prompt, "
                f"{wanted} for the completion).",
                param="max_tokens" if left > 0 else "messages",
                code="context_length_exceeded",
            )
        return params.max_tokens or min(left, DEFAULT_MAX_TOKENS)

    # -- generation --------------------------------------------------------------------------

    def generate(self, prompt_ids: list[int], params: wire.GenerationParams) -> Generation:
        """Start generating; iterate the result for text pieces (stop sequences applied)."""
        return Generation(self, prompt_ids, params, self._budget(prompt_ids, params))

    def _chat(self, req: wire.ChatRequest) -> Answer:
        ids = self.chat_prompt(req.messages)
        gen = self.generate(ids, req.params)
        if not req.stream:
            text = "".join(gen)
            return Answer(
                body=answers.chat_response(
                    id=answers.new_id("chatcmpl"),
                    model=self.name,
                    text=text,
                    finish_reason=gen.finish_reason,
                    prompt_tokens=len(ids),
                    completion_tokens=gen.completion_tokens,
                )
            )
        return sse_answer(self._chat_events(gen, req, len(ids)))

    def _chat_events(
        self, gen: Generation, req: wire.ChatRequest, n_prompt: int
    ) -> Iterator[bytes]:
        rid, created = answers.new_id("chatcmpl"), int(time.time())

        def chunk(**kw: Any) -> bytes:
            return answers.sse(answers.chat_chunk(id=rid, model=self.name, created=created, **kw))

        try:
            yield chunk(delta={"role": "assistant", "content": ""})
            for piece in gen:
                if piece:
                    yield chunk(delta={"content": piece})
            yield chunk(finish_reason=gen.finish_reason)
            if req.include_usage:
                yield chunk(usage_counts=answers.usage(n_prompt, gen.completion_tokens))
            yield answers.SSE_DONE
        finally:
            gen.close()

    def _completion(self, req: wire.CompletionRequest) -> Answer:
        ids = list(self.tokenizer(req.prompt, add_special_tokens=True)["input_ids"])
        if not ids:
            raise wire.OpenAIError("prompt is empty", param="prompt")
        gen = self.generate(ids, req.params)
        prefix = req.prompt if req.echo else ""
        if not req.stream:
            text = prefix + "".join(gen)
            return Answer(
                body=answers.completion_response(
                    id=answers.new_id("cmpl"),
                    model=self.name,
                    text=text,
                    finish_reason=gen.finish_reason,
                    prompt_tokens=len(ids),
                    completion_tokens=gen.completion_tokens,
                )
            )
        return sse_answer(self._completion_events(gen, req, len(ids), prefix))

    def _completion_events(
        self, gen: Generation, req: wire.CompletionRequest, n_prompt: int, prefix: str
    ) -> Iterator[bytes]:
        rid, created = answers.new_id("cmpl"), int(time.time())

        def chunk(**kw: Any) -> bytes:
            return answers.sse(
                answers.completion_chunk(id=rid, model=self.name, created=created, **kw)
            )

        try:
            if prefix:
                yield chunk(text=prefix)
            for piece in gen:
                if piece:
                    yield chunk(text=piece)
            yield chunk(finish_reason=gen.finish_reason)
            if req.include_usage:
                yield chunk(usage_counts=answers.usage(n_prompt, gen.completion_tokens))
            yield answers.SSE_DONE
        finally:
            gen.close()


def sse_answer(events: Iterator[bytes]) -> Answer:
    return Answer(stream=events, content_type="text/event-stream")


class Generation:
    """One running ``model.generate`` (in a thread, under the engine's lock), iterated for
    text pieces; :attr:`finish_reason` and :attr:`completion_tokens` are set at the end.
    :meth:`close` stops it early (a stop sequence, a client gone)."""

    def __init__(
        self,
        engine: TransformersEngine,
        prompt_ids: list[int],
        params: wire.GenerationParams,
        max_new_tokens: int,
    ) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        torch = engine.torch
        self.engine = engine
        self.max_new_tokens = max_new_tokens
        self.completion_tokens = 0
        self.last_token: int | None = None
        self.finish_reason = "stop"
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._stops = answers.StopMatcher(params.stop)
        outer = self

        class Streamer(TextIteratorStreamer):  # counts the generated tokens
            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:
                    flat = value.reshape(-1).tolist()
                    outer.completion_tokens += len(flat)
                    if flat:
                        outer.last_token = int(flat[-1])
                super().put(value)

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],),
                    outer._cancel.is_set(),
                    dtype=torch.bool,
                    device=input_ids.device,
                )

        self._streamer = Streamer(
            engine.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=STREAM_TIMEOUT
        )
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([prompt_ids], device=engine.device),
            "attention_mask": torch.ones(
                1, len(prompt_ids), dtype=torch.long, device=engine.device
            ),
            "max_new_tokens": max_new_tokens,
            "streamer": self._streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
            "pad_token_id": engine.pad_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        self._thread = threading.Thread(
            target=self._run, args=(kwargs, params.seed), daemon=True, name="generate"
        )
        self._thread.start()

    def _run(self, kwargs: dict[str, Any], seed: int | None) -> None:
        torch = self.engine.torch
        with self.engine.lock, torch.no_grad():
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                self.engine.model.generate(**kwargs)
            except BaseException as exc:  # reported to the reader
                self.error = exc
                self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            if self._cancel.is_set():
                break
            text, stopped = self._stops.feed(piece)
            if text:
                yield text
            if stopped:
                self._cancel.set()
                self.finish_reason = "stop"
                self._thread.join()
                return
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(str(self.error)) from self.error
        tail = self._stops.flush()
        if tail:
            yield tail
        hit_eos = self.last_token is not None and self.last_token in self.engine.eos_ids
        if self.completion_tokens >= self.max_new_tokens and not hit_eos:
            self.finish_reason = "length"

    def close(self) -> None:
        """Stop generating (idempotent) and wait for the thread to let go of the model."""
        self._cancel.set()
        self._thread.join()


def load_engine(
    model_dir: str, name: str, *, engine: str = "auto", base_dir: str | None = None
) -> TransformersEngine | VLLMEngine:
    """``vllm`` on a CUDA node where vLLM is importable (``auto``), else transformers."""
    if engine == "auto":
        engine = "transformers"
        if importlib.util.find_spec("vllm") is not None:
            import torch

            if torch.cuda.is_available():
                engine = "vllm"
    if engine == "vllm":
        try:  # on a node: staged beside this file
            from serving_vllm_engine import VLLMEngine  # type: ignore[import-not-found]
        except ImportError:  # in the repository
            from services.trainer.model_server.vllm_engine import VLLMEngine
        return VLLMEngine(model_dir, name, base_dir=base_dir)
    return TransformersEngine(model_dir, name, base_dir=base_dir)
