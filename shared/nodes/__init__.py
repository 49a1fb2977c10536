"""Node access: one SSH transport for the provisioner and the trainer (issue 17 item 2).

:class:`NodeAccess` says how to reach a node (user, host, port, jump host, key files,
known_hosts, host-key policy, keepalives, connect timeout) and renders it for OpenSSH (the
provisioner's probes and Ansible: :meth:`NodeAccess.openssh_options`, :func:`run_command`)
and for asyncssh (the trainer: :func:`open_connection`). Failures are classified the same
way on both sides (:mod:`shared.nodes.errors`).

One key policy
    Only the key files named are offered (``IdentitiesOnly``; asyncssh's ``client_keys``):
    the provisioner's are a run's keys from Vault, written 0600 into the run's private
    state dir for the run's lifetime (:func:`write_key`); the trainer's are the platform's
    (``AIDP_TRAINER_SSH_KEYS``). With none named, ssh's defaults apply.

One host-key policy: host keys are pinned
    - The provisioner pins a host's key on its first contact with it
      (:attr:`HostKeyPolicy.PIN_ON_FIRST_USE`, OpenSSH's ``accept-new``) into a
      known_hosts file of the platform's own, never a user's ``~/.ssh``: per user for
      the user's own hosts (``known_hosts_dir/<user id>``, :func:`user_known_hosts`), per
      run for fresh cloud VMs (the run's state dir). From then on a changed key is
      refused (``host_key_mismatch``, not retryable), never silently accepted.
    - Every other connection (the trainer's, and any without a known_hosts file of its
      own) only checks (:attr:`HostKeyPolicy.PINNED`): an unknown or changed key is
      refused. The system-wide known_hosts is never consulted when a file is named, and
      a named file that does not exist trusts no host (a clear ``host_key_mismatch``).
    - The provisioner announces what it pinned with each node (``NodeInfo.host_keys``,
      ``proxy_host_keys`` for the jump host; read with :func:`pinned_host_keys`) and the
      trainer checks the node against exactly those keys, in memory
      (``NodeAccess.key_lines``): cloud VMs and users' hosts alike, wherever it runs.
    - A node announced without keys (an older provisioner): the trainer checks a user's
      host against the very file the provisioner pinned it in: both find it with
      :func:`user_known_hosts` in the one ``AIDP_KNOWN_HOSTS_DIR``
      (:func:`known_hosts_dir`); other nodes against ``~/.ssh/known_hosts``.
    - :attr:`HostKeyPolicy.UNCHECKED` skips the check only on an operator's explicit,
      documented opt-in (``AIDP_TRAINER_ACCEPT_UNKNOWN_HOST_KEYS``).
    - A jump host is reached with the same keys, known_hosts and policy as the node.

Other options, the same everywhere: no prompts (``BatchMode``), a connect timeout, and
keepalives (three unanswered ones end the connection, so a node that stops answering
ends every stream of it).
"""

from __future__ import annotations

from shared.nodes.connect import open_connection
from shared.nodes.errors import classify_connect_error, classify_ssh_failure
from shared.nodes.keys import write_key
from shared.nodes.known_hosts import known_hosts_dir, pinned_host_keys, user_known_hosts
from shared.nodes.transport import (
    SSH_FAILED,
    HostKeyPolicy,
    Jump,
    NodeAccess,
    communicate,
    parse_jump,
    run_command,
)

__all__ = [
    "SSH_FAILED",
    "HostKeyPolicy",
    "Jump",
    "NodeAccess",
    "classify_connect_error",
    "classify_ssh_failure",
    "communicate",
    "known_hosts_dir",
    "open_connection",
    "parse_jump",
    "pinned_host_keys",
    "run_command",
    "user_known_hosts",
    "write_key",
]
