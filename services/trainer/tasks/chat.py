"""Built-in task ``chat``: supervised fine-tuning of a causal LM on conversations (TRL).

Data: JSON-lines, JSON or Parquet rows ``{"messages": [{"role", "content"}, ...]}`` (the
column is ``train.args.messages_column``), rendered with the model's own chat template by
TRL's ``SFTTrainer``; ``max_length`` cuts rows, ``packing`` joins short ones. Methods
(``_lora.py``): full fine-tuning, LoRA or QLoRA adapters (peft). Progress, checkpoints
(``checkpoints/checkpoint-N``, HF Trainer's layout, reported when saved) and resume
(``AIDP_RESUME_DIR`` handed to ``trainer.train``) follow the aidp protocol like every task.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _lora  # noqa: E402
import aidp_progress as aidp  # noqa: E402
import torch  # noqa: E402
from _common import TrainConfig, find_files, read_table, split_rows  # noqa: E402


def load_conversations(root: Path, column: str) -> list[dict[str, Any]]:
    """The well-formed conversations of the dataset (the pre-flight check reported the rest)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for f in find_files(root, (".jsonl", ".json", ".parquet")):
        for row in read_table(f):
            messages = row.get(column) if isinstance(row, dict) else None
            if not isinstance(messages, list) or not messages:
                skipped += 1
                continue
            try:
                clean = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
            except (KeyError, TypeError):
                skipped += 1
                continue
            rows.append({"messages": clean})
    if skipped:
        print(f"aidp: skipped {skipped} row(s) without a valid {column!r} list", flush=True)
    if not rows:
        raise SystemExit(f"no conversations (column {column!r}) found in the dataset")
    return rows


def _no_final_checkpoint() -> Any:
    """A callback that stops HF Trainer's save at the last step: the model is written to the
    output folder right after, a checkpoint of it would only be stored and dropped."""
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_save = False
            return control

    return NoFinalCheckpoint()


def _device() -> torch.device:
    if os.environ.get("AIDP_ACCELERATOR", "cpu") == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def main() -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    os.environ.setdefault("HF_HOME", str(aidp.workspace() / ".hf"))
    if os.environ.get("WORLD_SIZE", "1") == "1":
        # one process: no process group (HF Trainer would wrap the model in a 1-rank DDP)
        for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            os.environ.pop(name, None)
    import datasets

    datasets.disable_progress_bars()
    args = aidp.train_args()
    cfg = TrainConfig.from_env()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    column = str(args.get("messages_column") or "messages")
    packing = bool(args.get("packing") or False)
    device = _device()
    model_dir = aidp.model_dir()
    method = _lora.resolve_method(model_dir)
    options = _lora.lora_options(args)

    train_rows, eval_rows = split_rows(
        load_conversations(aidp.data_dir(), column), cfg.eval_fraction, cfg.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, trust_remote_code=False, local_files_only=True
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit("the model's tokenizer has no chat template: use task causal-lm")
    model = _lora.wrap(_lora.load_base(model_dir, method, device), method, options)

    checkpoints = Path(os.environ.get("AIDP_CHECKPOINT_ROOT") or aidp.workspace() / "checkpoints")
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() and method != "full"
    config = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="linear",
        seed=cfg.seed,
        max_length=cfg.max_length,
        packing=packing,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.checkpoint_every,
        save_total_limit=None,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device.type == "cpu",
        bf16=use_bf16,
        # activation recomputation saves GPU memory; on a CPU it only costs time
        gradient_checkpointing=device.type == "cuda",
        dataloader_num_workers=0,
        eval_strategy="no",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[aidp.trainer_callback(), _no_final_checkpoint()],
    )
    resume = aidp.resume_dir()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    metrics = {
        "train_loss": float(result.training_loss),
        "steps": float(trainer.state.global_step),
        **{
            k: float(v)
            for k, v in result.metrics.items()
            if k in ("train_runtime", "train_samples_per_second", "train_steps_per_second")
        },
    }
    if eval_rows:
        loss = float(trainer.evaluate()["eval_loss"])
        metrics.update(eval_loss=loss, eval_perplexity=math.exp(min(loss, 50.0)))
    if trainer.is_world_process_zero():
        facts = _lora.save_model(
            trainer.model,
            tokenizer,
            aidp.output_dir(),
            method=method,
            options=options,
            model_dir=model_dir,
        )
        if facts:
            metrics["lora_r"] = float(facts["r"])
        aidp.completed(metrics)


if __name__ == "__main__":
    main()
