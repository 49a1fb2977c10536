#!/usr/bin/env bash
# Install and start everything aidp's tests and demo need, on a fresh Debian machine
# (as root) or a developer's laptop. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# --- system packages -------------------------------------------------------------------
need=()
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)
command -v bwrap >/dev/null || need+=(bubblewrap)   # the run sandbox
command -v setpriv >/dev/null || need+=(util-linux)
command -v setfacl >/dev/null || need+=(acl)   # SSH nodes: per-run uid traverse grants
[ -x /usr/bin/python3.11 ] || need+=(python3.11)   # the SSH run-user tests' node python
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  log "apt-get install ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- services --------------------------------------------------------------------------
if [ -z "${AIDP_TEST_AMQP_URL:-}" ]; then
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
    for _ in $(seq 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
  fi
  rabbitmqctl await_startup >/dev/null 2>&1 || true
  if ! rabbitmq-plugins list -e 2>/dev/null | grep -q 'rabbitmq_management '; then
    log "enabling the RabbitMQ management API (fast per-test vhosts)"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
  fi
fi
if [ -z "${AIDP_TEST_POSTGRES_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  fi
  # A role and database for the tests (trust auth locally, or the postgres superuser).
  psql_admin() { if [ "$(id -u)" = 0 ]; then su postgres -c "psql -qAtX $*"; else psql -qAtX -U postgres "$@"; fi; }
  if ! psql -qAtX -h 127.0.0.1 -U aidp -d aidp_test -c 'select 1' >/dev/null 2>&1; then
    log "creating PostgreSQL role and database aidp/aidp_test"
    psql_admin "-c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='aidp') THEN CREATE ROLE aidp LOGIN SUPERUSER PASSWORD 'aidp'; END IF; END \\\$\\\$;\"" || true
    psql_admin "-c 'CREATE DATABASE aidp_test OWNER aidp'" 2>/dev/null || true
  fi
fi

# --- Python ----------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  $PY -m venv .venv
fi
stamp=.venv/.aidp-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python dependencies (torch==2.13.0 CPU wheel, ...)"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

# --- web UI ----------------------------------------------------------------------------
if [ -f web/package.json ] && [ -z "${AIDP_SKIP_WEB:-}" ]; then
  wstamp=web/node_modules/.aidp-installed
  wwant=$(cat web/package.json web/package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$wstamp" ] || [ "$(cat "$wstamp")" != "$wwant" ]; then
    log "installing web dependencies"
    (cd web && (npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error))
    echo "$wwant" > "$wstamp"
  fi
  if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html -newer web/dist/index.html 2>/dev/null | head -1)" ]; then
    log "building the web UI"
    (cd web && npm run build --silent)
  fi
fi
log "ready ($ROOT)"
