"""What accelerators a node offers, where the platform can tell before a run starts.

- The local node: this machine. ``AIDP_LOCAL_ACCELERATORS`` declares them; otherwise they
  are detected once per process: ``cuda`` when ``nvidia-smi -L`` lists a GPU (a cheap,
  reliable probe that needs no torch and no CUDA context), ``gaudi`` when ``hl-smi`` is on
  PATH, ``xpu`` when ``xpu-smi`` or ``sycl-ls`` is. ``cpu`` is always offered.
- IDC instance types: from the type's name (``…gaudi…`` → Gaudi, ``…pvc…`` → Intel Max
  GPUs (xpu), ``vm-spr…``/``bm-spr…`` → CPU only); an unknown naming scheme is not judged.
- SSH hosts: not known before the run; once a host answers its probe,
  :func:`remote_accelerators` asks it the same questions over SSH (its answers are only
  counted, never passed on), and a missing accelerator fails the run before the
  environment is configured on it.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess

__all__ = [
    "REMOTE_PROBE",
    "detect_local_accelerators",
    "idc_instance_accelerators",
    "missing_accelerator",
    "remote_accelerators",
]

log = logging.getLogger(__name__)

_GPU_LINE = re.compile(r"^GPU \d+:", re.MULTILINE)


def _nvidia_gpus() -> int:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return 0
    try:
        out = subprocess.run(
            [binary, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed (%s): the local node is taken to have no CUDA GPU", exc)
        return 0
    return len(_GPU_LINE.findall(out.stdout)) if out.returncode == 0 else 0


@functools.cache
def detect_local_accelerators() -> frozenset[str]:
    """Accelerators of this machine (probed once per process)."""
    found = {"cpu"}
    if _nvidia_gpus() > 0:
        found.add("cuda")
    if shutil.which("hl-smi"):
        found.add("gaudi")
    if shutil.which("xpu-smi") or shutil.which("sycl-ls"):
        found.add("xpu")
    log.info("local node accelerators: %s", ", ".join(sorted(found)))
    return frozenset(found)


#: The shell lines a remote node answers: ``nvidia-smi -L``'s GPU lines, then a marker per
#: tool found (``aidp-gaudi``, ``aidp-xpu``). Nothing from the node reaches a shell here.
REMOTE_PROBE = (
    "nvidia-smi -L 2>/dev/null; "
    "command -v hl-smi >/dev/null 2>&1 && echo aidp-gaudi; "
    "(command -v xpu-smi || command -v sycl-ls) >/dev/null 2>&1 && echo aidp-xpu; true"
)


def remote_accelerators(probe_output: str) -> frozenset[str]:
    """Accelerators a remote node offers, from its answer to :data:`REMOTE_PROBE`."""
    found = {"cpu"}
    if _GPU_LINE.search(probe_output):
        found.add("cuda")
    lines = set(probe_output.split())
    if "aidp-gaudi" in lines:
        found.add("gaudi")
    if "aidp-xpu" in lines:
        found.add("xpu")
    return frozenset(found)


def idc_instance_accelerators(instance_type: str) -> frozenset[str] | None:
    """Accelerators an IDC instance type offers, or None when its name says nothing known."""
    name = instance_type.lower()
    if "gaudi" in name:
        return frozenset({"cpu", "gaudi"})
    if "pvc" in name or "max-" in name:
        return frozenset({"cpu", "xpu"})
    if re.match(r"^(vm|bm)-(spr|icx|emr|gnr)(-|$)", name):
        return frozenset({"cpu"})
    return None


def missing_accelerator(wanted: str, offered: frozenset[str] | None, where: str) -> str | None:
    """A message for the user when ``wanted`` is not in ``offered`` (None: fine/unknown)."""
    if offered is None or wanted in offered:
        return None
    have = ", ".join(sorted(offered))
    hint = {
        "cuda": "no NVIDIA GPU (nvidia-smi lists none)",
        "gaudi": "no Gaudi (hl-smi not found)",
        "xpu": "no Intel GPU (xpu-smi/sycl-ls not found)",
    }.get(wanted, f"no {wanted}")
    return (
        f"resources.accelerator: {wanted!r} is not available on {where}: it has {hint}"
        f" and offers {have}. Use accelerator: cpu, or a provider whose nodes have {wanted}"
        " (ssh hosts, idc); nothing was started"
    )
