"""Per-run uids on SSH/IDC nodes: the shell scripts the SSH executor runs on a node.

node_base (``deploy/ansible/roles/node_base``) prepares, where the login user can become
root, a root-only folder :data:`RUN_UID_DIR` (0700) holding ``range`` (``<first uid>
<count>``) and ``leases/``. Each run workspace (``<workdir>/aidp-run-<id>``, or a
deployment's) leases one uid of that range for as long as the workspace lives:

- :data:`LEASE_SCRIPT` (as root, under ``flock``) takes the lowest uid that is free, or whose
  lease is stale (its workspace is gone and no process runs as it: the lease is cleaned
  first), records the workspace in ``leases/<uid>/workspace`` (``mkdir`` is the atomic
  claim), grants the uid traverse-only access (``setfacl u:<uid>:x``; ``chmod o+x`` where the
  node has no setfacl) to the workspace's parents and the interpreter's folder, and hands the
  workspace to it: owner the uid, group the run group (the login user's, never a run's),
  ``2770``, changed without following symlinks. It prints ``ids <uid> <gid>``; the gid is
  the uid's own (no group entry: no other process has it).
- :data:`RELEASE_SCRIPT` (as root) removes a workspace and then ends its lease: kills what
  still runs as the uid, deletes its files in ``/tmp``, ``/var/tmp`` and ``/dev/shm``,
  revokes its traverse grants and removes ``leases/<uid>``.

A node without ``range`` (provisioned before per-run uids) falls back to the single run user
(``aidp-run``) that node_base always creates, and the run's log says that runs there share
one uid. Both scripts refuse to work where ``fs.protected_hardlinks`` is off (a run could then
hard-link a file it does not own into its workspace and have the handover chown it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from shared.errors import ProviderError

__all__ = ["LEASE_SCRIPT", "RELEASE_SCRIPT", "RUN_UID_DIR", "START_SCRIPT", "env_script"]

#: Root-only folder node_base prepares: ``range`` and ``leases/<uid>/``.
RUN_UID_DIR = "/var/lib/aidp/run-uids"

_COMMON = f"""
set -eu
base={shlex.quote(RUN_UID_DIR)}
fail() {{ echo "aidp: $*" >&2; exit 1; }}
running() {{
  if command -v pgrep >/dev/null 2>&1; then pgrep -U "$1" >/dev/null
  else stat -c %u /proc/[0-9]* 2>/dev/null | grep -qx "$1"; fi
}}
end_lease() {{
  u=$1 d="$base/leases/$1"
  if command -v pkill >/dev/null 2>&1; then pkill -KILL -U "$u" 2>/dev/null || true; fi
  for t in /tmp /var/tmp /dev/shm; do
    [ -d "$t" ] && find "$t" -xdev -user "$u" -delete 2>/dev/null || true
  done
  if [ -f "$d/granted" ] && command -v setfacl >/dev/null 2>&1; then
    while IFS= read -r p; do setfacl -x "u:$u" "$p" 2>/dev/null || true; done < "$d/granted"
  fi
  rm -rf -- "$d"
}}
[ "$(cat /proc/sys/fs/protected_hardlinks 2>/dev/null)" = 1 ] || fail "fs.protected_hardlinks\
 is off on this node: a run could hard-link files it does not own into its workspace\
 (sysctl -w fs.protected_hardlinks=1, or re-provision the node)"
"""

#: ``sh -c LEASE_SCRIPT sh <workspace> <run group> <fallback run user> <interpreter dir>``
LEASE_SCRIPT = (
    _COMMON
    + r"""
ws=$1 group=$2 fallback=$3 pydir=$4
case "$ws" in /*) ;; *) fail "workspace $ws is not absolute" ;; esac
[ -d "$ws" ] && [ ! -L "$ws" ] || fail "workspace $ws is missing"
gid=$(getent group "$group" | cut -d: -f3)
[ -n "$gid" ] || fail "the run group $group is missing on this node: re-provision it"
lease=
if [ -f "$base/range" ]; then
  exec 9>"$base/.lock"
  flock 9
  read -r first count < "$base/range"
  mkdir -p -m 0700 "$base/leases"
  uid=
  for d in "$base/leases"/*; do
    [ -f "$d/workspace" ] && [ "$(cat "$d/workspace")" = "$ws" ] && { uid=${d##*/}; break; }
  done
  i=0
  while [ -z "$uid" ] && [ "$i" -lt "$count" ]; do
    u=$((first + i)); i=$((i + 1)); d="$base/leases/$u"
    if [ -d "$d" ]; then
      held=$(cat "$d/workspace" 2>/dev/null || true)
      if [ -n "$held" ] && [ -e "$held" ]; then continue; fi
      if running "$u"; then continue; fi
      end_lease "$u"  # stale: its workspace is gone and nothing runs as it
    fi
    mkdir -m 0700 "$d"
    printf '%s\n' "$ws" > "$d/workspace"
    uid=$u
  done
  [ -n "$uid" ] || fail "no free run uid on this node (all $count leased):\
 raise aidp_run_uid_count and re-provision, or wait for runs to end"
  run_gid=$uid lease="$base/leases/$uid"
else
  uid=$(id -u "$fallback") || fail "no run uid pool and no run user $fallback: re-provision"
  run_gid=$(id -g "$fallback")
  echo "aidp: this node has no per-run uid pool: runs here share the user $fallback" \
    "(re-provision the node to isolate runs from each other)" >&2
fi
grant() {
  p= old=$IFS
  IFS=/
  set -f
  for part in $1; do
    [ -n "$part" ] || continue
    p="$p/$part"
    [ -d "$p" ] || break
    setpriv --reuid="$uid" --regid="$run_gid" --clear-groups test -x "$p" && continue
    if command -v setfacl >/dev/null 2>&1; then
      setfacl -m "u:$uid:x" "$p"
      [ -z "$lease" ] || printf '%s\n' "$p" >> "$lease/granted"
    else
      chmod o+x "$p"
    fi
  done
  set +f
  IFS=$old
}
grant "${ws%/*}"
[ -z "$pydir" ] || grant "$pydir"
mkdir -p "$ws/home"
chown -R -P "$uid:$gid" "$ws"
chmod -R u+rwX,g+rwX,o-rwx "$ws"
chmod 2770 "$ws"
echo "ids $uid $run_gid"
"""
)

#: ``sh -c RELEASE_SCRIPT sh <workspace>``: remove the workspace, then end its lease.
RELEASE_SCRIPT = (
    _COMMON
    + r"""
ws=$1
rm -rf -- "$ws"
[ -d "$base/leases" ] || exit 0
exec 9>"$base/.lock"
flock 9
for d in "$base/leases"/*; do
  [ -f "$d/workspace" ] && [ "$(cat "$d/workspace")" = "$ws" ] && end_lease "${d##*/}"
done
exit 0
"""
)

#: Run as the run uid: ``sh -c START_SCRIPT sh <argv...>`` with the environment on stdin.
#: The variables arrive as ``export K='v'`` lines and are set by the shell itself, so no
#: value ever appears in an argv on the node (``ps``, ``/proc/*/cmdline``).
START_SCRIPT = 'umask 007; eval "$(cat)" || exit 126; exec "$@" </dev/null'

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_script(variables: Mapping[str, str]) -> str:
    """The environment as shell ``export`` lines for :data:`START_SCRIPT`'s stdin."""
    lines = []
    for name, value in variables.items():
        if not _NAME.fullmatch(name) or "\0" in value:
            raise ProviderError(f"invalid environment variable {name!r} for a node process")
        lines.append(f"export {name}={shlex.quote(value)}\n")
    return "".join(lines)
