"""Tiny models and datasets built by the trainer tests (seconds to train on a CPU)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "happy", "nice", "superb", "excellent"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "ugly", "horrid", "dreadful"]
FILLER = ["the", "movie", "was", "really", "plot", "acting", "very", "quite", "a", "film"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_sentiment_csv(path: Path, *, rows: int = 64, seed: int = 0) -> Path:
    """A CSV with ``text`` and ``label`` (pos/neg) columns that a tiny model can learn."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = "pos" if i % 2 == 0 else "neg"
            words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    return path


def build_tiny_bert(dest: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random BERT encoder (safetensors) with a WordPiece tokenizer, saved like a HF repo."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    dest.mkdir(parents=True, exist_ok=True)
    vocab = dest / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER))) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(set(POSITIVE + NEGATIVE + FILLER)),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


def build_tiny_gpt2(dest: Path, *, seed: int = 0) -> Path:
    """A random GPT-2 (safetensors) sharing the tiny WordPiece vocabulary."""
    import torch
    from transformers import (  # type: ignore[attr-defined]
        BertTokenizerFast,
        GPT2Config,
        GPT2LMHeadModel,
    )

    dest.mkdir(parents=True, exist_ok=True)
    vocab = dest / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER))) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(SPECIAL) + len(set(POSITIVE + NEGATIVE + FILLER)),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    GPT2LMHeadModel(config).save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest
