"""The run sandbox: every process started from tenant input on this machine runs here.

A sandboxed process gets (see ``README.md`` beside this file for the threat model):

- its own unprivileged uid/gid from a configured range (:mod:`.uids`), dropped with
  util-linux ``setpriv`` *before* anything of the tenant runs — the uid the host sees, not
  root renamed by a user namespace;
- new pid, ipc, uts and network namespaces (bubblewrap), ``--die-with-parent``,
  ``--new-session``; the nodes of one run share one network namespace (:mod:`.netns`);
- only these mounts: its workspace (read-write, with the platform's staged folders
  read-only on top), its environment (read-only), system directories read-only, a private
  ``/tmp``, a minimal ``/dev`` and its own ``/proc``;
- resource limits (open files, processes, no core dumps; memory through a cgroup where
  the host allows one, :mod:`.cgroups`).

A sandbox that cannot be set up raises :class:`SandboxError` naming the cause and the fix;
nothing ever falls back to running unsandboxed.
"""

from shared.sandbox.command import SandboxSpec, sandbox_argv, sandbox_env
from shared.sandbox.errors import SandboxError
from shared.sandbox.policy import SandboxPolicy, check_host
from shared.sandbox.sandboxes import Sandboxes
from shared.sandbox.uids import UidLeases

__all__ = [
    "SandboxError",
    "SandboxPolicy",
    "SandboxSpec",
    "Sandboxes",
    "UidLeases",
    "check_host",
    "sandbox_argv",
    "sandbox_env",
]
