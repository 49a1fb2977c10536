"""A tiny chat model and a chat dataset made at test time (no download), for the LLM tests.

:func:`make_tiny_chat_model` writes a random 2-layer Llama (hidden 48, safetensors) with a
byte-level BPE tokenizer trained with ``tokenizers`` on :func:`chat_dataset_rows` and a
ChatML chat template in its ``tokenizer_config.json`` — a directory laid out like a
HuggingFace repo, ready for :meth:`HubServer.add_repo_dir`. ``eos_token`` is
``<|im_end|>``, so a generation stops at the end of the assistant's turn.
:func:`publish_tiny_chat_project` puts the model and a ``train.jsonl`` of the rows on a hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "TINY_CHAT_DATASET",
    "TINY_CHAT_MODEL",
    "chat_dataset_rows",
    "chat_spec",
    "make_tiny_chat_model",
    "publish_tiny_chat_project",
    "write_jsonl",
]

TINY_CHAT_MODEL = "aidp-tests/tiny-chat-llama"
TINY_CHAT_DATASET = "aidp-tests/tiny-chat"

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]

#: ChatML, the layout Qwen and many others use.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
_THINGS = ["apple", "leaf", "sky", "sun", "plum", "carrot", "night", "snow"]


def chat_dataset_rows(n: int = 48) -> list[dict[str, Any]]:
    """``n`` rows ``{"messages": [system?, user, assistant]}``, deterministic, well formed."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        thing, colour = _THINGS[i % len(_THINGS)], _COLOURS[(i * 3) % len(_COLOURS)]
        messages = [
            {"role": "user", "content": f"What colour is the {thing} number {i}?"},
            {"role": "assistant", "content": f"The {thing} number {i} is {colour}."},
        ]
        if i % 4 == 0:
            messages.insert(0, {"role": "system", "content": "You answer in one short sentence."})
        rows.append({"messages": messages})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON lines (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    texts = []
    for row in chat_dataset_rows(64):
        for message in row["messages"]:
            texts.append(f"{message['role']}\n{message['content']}")
    texts += ["Hello! How can I help you today?", "I do not know.", "Yes.", "No."]
    return texts


def make_tiny_chat_model(
    dest: Path, *, hidden: int = 48, layers: int = 2, vocab_size: int = 384, seed: int = 0
) -> Path:
    """Write a random tiny Llama chat model (config, safetensors, tokenizer) to ``dest``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (  # type: ignore[attr-defined]
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<|unk|>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(dest)
    # The template also in tokenizer_config.json (newer transformers write chat_template.jinja).
    config_file = dest / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text())
    tok_config["chat_template"] = CHAT_TEMPLATE
    config_file.write_text(json.dumps(tok_config, indent=2))

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(dest, safe_serialization=True)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=16,
    ).save_pretrained(dest)
    return dest


def publish_tiny_chat_project(
    hub: Any, workdir: Path, *, rows: list[dict[str, Any]] | None = None, dataset: str = ""
) -> tuple[str, str]:
    """Put the tiny chat model and a ``train.jsonl`` of ``rows`` on ``hub`` (a HubServer);
    returns the (model, dataset) repo ids. ``dataset`` names another dataset repo."""
    model_dir = make_tiny_chat_model(workdir / "tiny-chat-llama")
    hub.add_repo_dir(TINY_CHAT_MODEL, model_dir, repo_type="model")
    data = write_jsonl(workdir / "chat-data" / "train.jsonl", rows or chat_dataset_rows())
    repo = dataset or TINY_CHAT_DATASET
    hub.commit(repo, {"train.jsonl": data.read_bytes()}, repo_type="dataset")
    return TINY_CHAT_MODEL, repo


def chat_spec(
    name: str,
    *,
    dataset: str = TINY_CHAT_DATASET,
    method: str = "lora",
    max_steps: int = 6,
    deploy: bool = False,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``task: chat`` project spec for the tiny model on the local provider's CPU."""
    return {
        "name": name,
        "model": f"hf://{TINY_CHAT_MODEL}@main",
        "dataset": f"hf://datasets/{dataset}@main",
        "task": "chat",
        "train": {
            "method": method,
            "args": {
                "max_steps": max_steps,
                "batch_size": 4,
                "learning_rate": 5e-3,
                "max_length": 64,
                "lora_r": 4,
                **(args or {}),
            },
            "checkpoint_every": 4,
        },
        "environment": {"python": "3.11", "packages": []},
        "resources": {"provider": "local", "nodes": 1, "accelerator": "cpu"},
        "deploy": {"enabled": deploy},
    }
