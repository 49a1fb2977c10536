"""The fetcher's side of the check: decrypt the inputs, hand them to a limited child
process (``python -I -m services.fetcher.preflight``) and read its event back.

Template, tokenizer and rows come from a hub, so they are parsed in the child: an empty
environment, no secrets, a memory limit and :data:`~.limits.TIMEOUT` seconds. A check that
cannot finish (a template that loops, a crash) passes with a note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from services.fetcher.preflight.inputs import collect_inputs
from services.fetcher.preflight.limits import TIMEOUT
from services.fetcher.preflight.wire import encode
from shared.events import DatasetValidated, ValidationFailed
from shared.spec import ProjectSpec
from shared.store import ArtifactStore

__all__ = ["check_artifacts"]


def check_artifacts(
    store: ArtifactStore,
    spec: ProjectSpec,
    *,
    model_key: str,
    dataset_key: str,
    timeout: float = TIMEOUT,
) -> DatasetValidated | ValidationFailed:
    """Run the check on the cached model and dataset; returns its event. The untrusted
    parts (template, tokenizer, rows) are parsed in a limited child process."""
    inputs = collect_inputs(store, spec, model_key=model_key, dataset_key=dataset_key)
    request = json.dumps({"spec": spec.model_dump(mode="json")}).encode() + b"\n" + encode(inputs)
    with tempfile.TemporaryDirectory(prefix="aidp-preflight-") as home:
        env = {
            "PATH": os.defpath,
            "HOME": home,
            "LANG": "C.UTF-8",
            "TOKENIZERS_PARALLELISM": "false",
            "RAYON_NUM_THREADS": "1",
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-m", "services.fetcher.preflight"],
                input=request,
                capture_output=True,
                env=env,
                cwd=home,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return _unfinished(spec, f"the check did not finish in {timeout:.0f} s")
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        return _unfinished(spec, f"the check failed ({tail[0][:200]})")
    try:
        out = json.loads(proc.stdout)
        if out.get("type") == "ValidationFailed":
            return ValidationFailed.model_validate(out["payload"])
        return DatasetValidated.model_validate(out["payload"])
    except (ValueError, KeyError, TypeError):
        return _unfinished(spec, "the check's answer was not readable")


def _unfinished(spec: ProjectSpec, why: str) -> DatasetValidated:
    """A check that could not run passes with a note: the run is not lost to it."""
    return DatasetValidated(
        task=spec.task, rows_checked=0, method=spec.train.method, notes=[f"{why}; not checked"]
    )
