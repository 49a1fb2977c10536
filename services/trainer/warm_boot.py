"""What a warm spare runs and knows before any run claims it (:mod:`services.trainer.warm`):
its boot program, the import-time environment, the host's available memory, the model
architectures to import ahead."""

from __future__ import annotations

import json
import os
import re
import shutil

from shared.sandbox.confined import confined_open

__all__ = [
    "IMPORT_TIME_ENV",
    "MAX_PRELOADED_KINDS",
    "PROTECTED",
    "READY",
    "WARM_BOOT",
    "available_memory_mb",
    "model_type",
    "remove_folder",
]

#: Folders of a run's workspace mounted read-only in its sandbox: they must exist before
#: the spare's sandbox starts (a bind mount needs its folder), and stay the same folders.
PROTECTED = ("src", "model", "data", "resume", "cache")

#: The first line a spare prints once warm.
READY = "@@aidp-warm-ready"

#: Environment every training process gets that libraries read while they are imported
#: (the rest of a run's environment arrives with the claim). Must match launch_env.
IMPORT_TIME_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "warning",
    "TOKENIZERS_PARALLELISM": "false",
}

#: The spare's program (``python -u -c``): import, say ready, wait for one claim (one JSON
#: line: env, script, src, threads), then run the script as ``__main__``. stdin is closed
#: after the claim so the run sees what a cold process sees (no input).
WARM_BOOT = r"""
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]  # -c puts the working directory first; a script's run never has it
import json, os, threading
import torch, transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
from transformers import AutoModelForImageClassification
import safetensors.torch
for kind in filter(None, os.environ.pop("AIDP_WARM_PRELOAD", "").split(",")):
    for module in ("modeling_", "tokenization_", "configuration_"):
        try:
            __import__(f"transformers.models.{kind}.{module}{kind}")
        except Exception:
            pass
print("@@aidp-warm-ready", len(os.listdir("/proc/self/task")), threading.active_count(), flush=True)
line = sys.stdin.readline()
if not line:
    sys.exit(0)
claim = json.loads(line)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
os.environ.clear()
os.environ.update(claim["env"])
if claim.get("threads"):
    torch.set_num_threads(int(claim["threads"]))
sys.path[:0] = [os.path.dirname(claim["script"]), claim["src"]]
sys.argv = [claim["script"]]
del json, line, null
import runpy
runpy.run_path(claim["script"], run_name="__main__")
"""


def available_memory_mb() -> int:
    """The host's available memory (``MemAvailable``), in MiB."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1 << 30


#: Model architectures whose code a spare imports ahead (the key's most recent ones).
MAX_PRELOADED_KINDS = 2
_MODEL_TYPE = re.compile(r"[a-z0-9_]{1,64}")


def model_type(root: str, config: str) -> str | None:
    """``model_type`` of a staged ``config.json`` (read without following symlinks), if it
    is a plain module name; None otherwise."""
    try:
        fd = confined_open(root, config)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(1 << 20)
    try:
        kind = json.loads(raw).get("model_type")
    except (ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) and _MODEL_TYPE.fullmatch(kind) else None


def remove_folder(folder: str) -> None:
    """Remove a spare's folder on the host (best effort)."""
    shutil.rmtree(folder, ignore_errors=True)
