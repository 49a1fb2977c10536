"""A hostile training script: it tries every escape the penetration test found and reports
which ones worked. The tests run it as a ``task: custom`` project and assert that every
attempt failed *and* that the run itself still finished (a sandbox that kills everything
cannot pass).

Targets come in ``train.args.targets`` (host paths and addresses only the test knows):
``read`` (files), ``list`` (folders), ``tcp`` ([host, port] pairs), ``unix`` (socket paths),
``write`` (host paths to create), ``pids`` (platform processes to signal or read
``/proc/<pid>/environ`` of), ``checkpoint_victims`` (host folders a checkpoint path names).
The script prints one line ``HOSTILE-REPORT <json>`` with ``attempts``, ``escapes`` (the
attempts that worked), ``uid`` and ``gid``, and completes with metrics ``escapes``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["HOSTILE_SCRIPT", "host_files", "hostile_spec", "parse_report", "victim_dir"]

HOSTILE_SCRIPT = r"""
import json, os, resource, socket, sys
import aidp_progress as aidp

args = aidp.train_args()
targets = args.get("targets", {})
rank = int(os.environ.get("RANK", "0"))
attempts, escapes = [], []


def attempt(name, action):
    attempts.append(name)
    try:
        result = action()
    except BaseException as exc:  # refused: what a sandbox must answer
        return
    if result is not False:
        escapes.append(f"{name}: {str(result)[:120]}")


def read(path):
    with open(path, "rb") as fh:
        return fh.read(64) or b"(empty but readable)"


def connect_tcp(host, port):
    with socket.create_connection((host, port), timeout=2):
        return "connected"


def connect_unix(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(path)
        return "connected"


def write(path):
    with open(path, "w") as fh:
        fh.write("escaped")
    return "written (inside the sandbox's own view at least)"


for path in targets.get("read", []):
    attempt(f"read {path}", lambda p=path: read(p))
# bwrap makes the folders on the way to what it binds: seeing those names is no escape
own = [str(aidp.workspace()), sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)]


def on_own_path(entry):
    return any(p == entry or p.startswith(entry + "/") for p in own)


def foreign_entries(folder):
    names = [n for n in os.listdir(folder) if not on_own_path(os.path.join(folder, n))]
    return names or False


for path in targets.get("list", []):
    attempt(f"list {path}", lambda p=path: foreign_entries(p))
for host, port in targets.get("tcp", []):
    attempt(f"tcp {host}:{port}", lambda h=host, p=port: connect_tcp(h, p))
for path in targets.get("unix", []):
    attempt(f"unix {path}", lambda p=path: connect_unix(p))
for pid in targets.get("pids", []):
    attempt(f"environ of {pid}", lambda p=pid: read(f"/proc/{p}/environ"))
    attempt(f"signal {pid}", lambda p=pid: os.kill(p, 0) or "signalled")
attempt("become root", lambda: os.setuid(0) or "setuid(0) worked")
attempt("running as root", lambda: os.getuid() == 0 and "uid 0")
attempt("dump core", lambda: resource.getrlimit(resource.RLIMIT_CORE)[0] > 0 and "cores on")

if rank == 0:
    # Writes: inside the sandbox these may land in its private /tmp; the test checks the host.
    for path in targets.get("write", []):
        try:
            write(path)
        except OSError:
            pass
    # Checkpoint paths that leave checkpoints/: the trainer must refuse to store and delete them.
    ws = aidp.workspace()
    for i, victim in enumerate(targets.get("checkpoint_victims", [])):
        rel_up = os.path.relpath(victim, ws)
        aidp.emit({"event": "checkpoint", "step": 1000 + i, "path": rel_up})
        aidp.emit({"event": "checkpoint", "step": 2000 + i, "path": victim})
        link = ws / "checkpoints" / f"link-{i}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(victim, link)
        aidp.emit({"event": "checkpoint", "step": 3000 + i, "path": f"checkpoints/link-{i}"})
    report = {"attempts": attempts, "escapes": escapes, "uid": os.getuid(), "gid": os.getgid()}
    print("HOSTILE-REPORT " + json.dumps(report), flush=True)

if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the ranks still reach each other
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    total = torch.tensor([1.0])
    dist.all_reduce(total)
    dist.destroy_process_group()
    if rank == 0:
        print(f"HOSTILE-WORLD {int(total.item())}", flush=True)

aidp.report(1, total_steps=1, loss=0.0, samples=1)
(aidp.output_dir() / "weights.txt").write_text("trained anyway")
aidp.completed({"escapes": float(len(escapes))})
"""


def hostile_spec(targets: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """A custom-task spec running :data:`HOSTILE_SCRIPT` against ``targets``."""
    return {
        "name": name or f"hostile-{uuid.uuid4().hex[:8]}",
        "task": "custom",
        "train": {
            "entrypoint": "train.py",
            "script": HOSTILE_SCRIPT,
            "args": {"targets": targets},
        },
        "deploy": {"enabled": False},
    }


def parse_report(lines: list[str]) -> dict[str, Any]:
    """The script's report from the run's log lines (AssertionError when it never ran)."""
    for line in lines:
        if "HOSTILE-REPORT " in line:
            return dict(json.loads(line.split("HOSTILE-REPORT ", 1)[1]))
    raise AssertionError(f"the hostile script printed no report; log tail: {lines[-20:]}")


def host_files(root: Path, pattern: str) -> list[str]:
    """Files under ``root`` matching ``pattern`` (what the script must not read)."""
    return [str(p) for p in sorted(root.glob(pattern)) if p.is_file()]


def victim_dir(root: Path) -> Path:
    """A host folder with a file in it that a checkpoint path will name."""
    victim = root / f"victim-{uuid.uuid4().hex[:6]}"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("must survive")
    os.chmod(victim, 0o755)
    return victim
