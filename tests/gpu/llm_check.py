"""GPU check of LLM fine-tuning (issue 15), by hand on a CUDA machine; no download needed.

    python tests/gpu/llm_check.py [--steps 30] [--batch-size 8] [--max-length 256]
                                  [--methods lora,qlora] [--size 0.5b|tiny]

Builds a ~0.5B-parameter Qwen2-shaped model with random weights (bf16, saved locally) with
the tiny chat tokenizer and ChatML template of ``tests/support/tiny_chat_model.py``, writes
a chat dataset, stages the task scripts into a temporary workspace exactly as the trainer
does and runs them with ``AIDP_ACCELERATOR=cuda``:

- TRL importable: the ``chat`` task (TRL ``SFTTrainer`` + peft LoRA);
- else: the ``causal-lm`` task with LoRA (peft + aidp's own loop) on the rendered texts;
- QLoRA as well when ``bitsandbytes`` imports (else reported as skipped).

Prints, per method, the device, steps, samples/s and tokens/s the run reported, the peak
GPU memory, and that the adapter was saved; exits non-zero when a run fails. Needs torch,
transformers, peft, accelerate, safetensors, tokenizers (+ trl / bitsandbytes optionally).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.tiny_chat_model import (  # noqa: E402
    chat_dataset_rows,
    make_tiny_chat_model,
    write_jsonl,
)

TASKS = ROOT / "services" / "trainer" / "tasks"
CLIENT = ROOT / "services" / "trainer" / "progress_client.py"
MARKER = "@@aidp@@ "


def build_model(dest: Path, size: str) -> int:
    """The tiny tokenizer + a random Qwen2-shaped model; returns its parameter count."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM  # type: ignore[attr-defined]

    make_tiny_chat_model(dest)  # tokenizer, template, generation config (+ a tiny Llama)
    for f in dest.glob("*.safetensors"):
        f.unlink()
    tok = json.loads((dest / "config.json").read_text())
    shape = (
        dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
             num_attention_heads=14, num_key_value_heads=2, vocab_size=151936)
        if size == "0.5b"
        else dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=tok["vocab_size"])
    )  # fmt: skip
    config = Qwen2Config(
        **shape,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.get("bos_token_id"),
        eos_token_id=tok.get("eos_token_id"),
        pad_token_id=tok.get("pad_token_id"),
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    del model
    return n


def long_rows(n: int) -> list[dict[str, Any]]:
    """Chat rows a few hundred tokens long (the tiny rows repeated inside each turn)."""
    rows = chat_dataset_rows(n)
    for row in rows:
        for m in row["messages"]:
            m["content"] = " ".join([m["content"]] * 12)
    return rows


def run_task(
    work: Path, model: Path, data: Path, script: str, method: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Stage like the trainer and run one task; returns its completed metrics and more."""
    ws = work / f"ws-{script.removesuffix('.py')}-{method}"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "src").mkdir(parents=True)
    for f in TASKS.glob("*.py"):
        shutil.copy(f, ws / "src" / f.name)
    shutil.copy(CLIENT, ws / "src" / "aidp_progress.py")
    (ws / "model").symlink_to(model)
    (ws / "data").symlink_to(data)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIDP_")},
        "PYTHONPATH": str(ws / "src"),
        "PYTHONUNBUFFERED": "1",
        "AIDP_WORKSPACE": str(ws),
        "AIDP_MODEL_DIR": str(ws / "model"),
        "AIDP_DATA_DIR": str(ws / "data"),
        "AIDP_OUTPUT_DIR": str(ws / "output" / "model"),
        "AIDP_CHECKPOINT_ROOT": str(ws / "checkpoints"),
        "AIDP_TRAIN_ARGS": json.dumps(args),
        "AIDP_TRAIN_METHOD": method,
        "AIDP_CHECKPOINT_EVERY": str(10**6),
        "AIDP_ACCELERATOR": "cuda",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-u", str(ws / "src" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    wall = time.perf_counter() - began
    messages = [
        json.loads(line[len(MARKER) :])
        for line in proc.stdout.splitlines()
        if line.startswith(MARKER)
    ]
    done = next((m for m in messages if m.get("event") == "completed"), None)
    out = ws / "output" / "model"
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        "metrics": (done or {}).get("metrics", {}),
        "adapter": (out / "adapter_config.json").exists(),
        "tail": (proc.stderr or proc.stdout)[-3000:],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--size", choices=["0.5b", "tiny"], default="0.5b")
    opts = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("FAIL: no CUDA device visible to torch")
        return 1
    try:  # importable, not only installed (TRL needs datasets and its dependencies)
        import trl  # noqa: F401

        have_trl = True
    except Exception:
        have_trl = False
    have_bnb = importlib.util.find_spec("bitsandbytes") is not None
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print(f"trl: {'yes' if have_trl else 'no'}; bitsandbytes: {'yes' if have_bnb else 'no'}")

    work = Path(tempfile.mkdtemp(prefix="aidp-llm-check-"))
    failures = 0
    try:
        model = work / "model"
        t0 = time.perf_counter()
        params = build_model(model, opts.size)
        print(f"model: Qwen2-shaped, {params / 1e6:.0f}M parameters, built in "
              f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
        rows = long_rows(max(64, opts.steps * opts.batch_size))
        data = work / "data"
        if have_trl:
            write_jsonl(data / "train.jsonl", rows)
            script = "chat.py"
        else:  # peft + aidp's loop on the rendered conversations
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model)
            texts = [{"text": tok.apply_chat_template(r["messages"], tokenize=False)} for r in rows]
            write_jsonl(data / "train.jsonl", texts)
            script = "causal_lm.py"
        args = {
            "max_steps": opts.steps,
            "batch_size": opts.batch_size,
            "max_length": opts.max_length,
            "learning_rate": 2e-4,
            "lora_r": 16,
        }
        for method in [m.strip() for m in opts.methods.split(",") if m.strip()]:
            if method == "qlora" and not have_bnb:
                print("qlora: SKIPPED (bitsandbytes is not installed)")
                continue
            torch.cuda.reset_peak_memory_stats()
            result = run_task(work, model, data, script, method, args)
            m = result["metrics"]
            sps = m.get("train_samples_per_second") or 0.0
            ok = result["rc"] == 0 and result["adapter"] and m.get("steps", 0) >= opts.steps
            tokens = sps * opts.max_length  # rows are longer than max_length: cut to it
            print(
                f"{method} ({script}): {'OK' if ok else 'FAIL'} rc={result['rc']}"
                f" steps={m.get('steps')} samples/s={sps:.2f} tokens/s~{tokens:.0f}"
                f" loss={m.get('train_loss')} wall={result['wall_s']:.1f}s"
                f" adapter_saved={result['adapter']}"
            )
            if not ok:
                failures += 1
                print(result["tail"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("RESULT:", "PASS" if failures == 0 else f"FAIL ({failures} run(s) failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
