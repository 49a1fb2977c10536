"""Accelerator detection on a GPU machine (run by hand; stdlib only, no venv needed).

    python3 tests/gpu/accelerator_check.py

Prints what ``nvidia-smi -L`` lists and what the local node is taken to offer; exits 1
unless a machine with an NVIDIA GPU is found to offer ``cuda`` (issue 16 item 3: the
check that refuses ``accelerator: cuda`` on CPU-only hosts must accept it here).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.provisioner.accelerators import (  # noqa: E402
    detect_local_accelerators,
    missing_accelerator,
)


def main() -> int:
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    print("nvidia-smi -L:", listed.strip() or "(none)")
    offered = detect_local_accelerators()
    print("offered:", sorted(offered))
    problem = missing_accelerator("cuda", offered, "this machine")
    print("cuda:", "refused: " + problem if problem else "accepted")
    return 0 if (not listed.strip() or "cuda" in offered) else 1


if __name__ == "__main__":
    raise SystemExit(main())
