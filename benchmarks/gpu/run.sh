#!/usr/bin/env bash
# The GPU benchmarks of docs/benchmarks.md, end to end on one machine with a GPU:
# serve with the towers on the GPU, teach two tasks by feedback (trained on the GPU), then
# `bench load` at concurrency 64 and `bench swap` against it. Everything listens on 127.0.0.1.
#   benchmarks/gpu/run.sh DATA.jsonl OUT_DIR
# REBQ: the rebq-serve command (default .venv/bin/rebq-serve); DEVICE (default cuda), REQUESTS (3000),
# CONFIG (default benchmarks/gpu/config.yaml); SKIP_SWAP=1 runs `bench load` alone.
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu/run.sh DATA.jsonl OUT_DIR}
OUT=${2:?usage: benchmarks/gpu/run.sh DATA.jsonl OUT_DIR}
REBQ=${REBQ:-.venv/bin/rebq-serve}
DEVICE=${DEVICE:-cuda}
REQUESTS=${REQUESTS:-3000}
PY=${PY:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
CONFIG=${CONFIG:-$HERE/config.yaml}
URL=http://127.0.0.1:8000
STATE=$(mktemp -d /tmp/rebq-gpu-state.XXXXXX)
mkdir -p "$OUT"

$REBQ serve --config "$CONFIG" --state-dir "$STATE" --device "$DEVICE" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT

wait_for() {  # wait_for SECONDS PYTHON_CONDITION_ON_MODEL: poll GET /v1/model until the condition holds
    "$PY" - "$1" "$2" "$URL" "$SERVER" <<'PYEOF'
import json, os, sys, time, urllib.request
limit, condition, url, server = float(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.monotonic()
while time.monotonic() - start < limit:
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit("the server has stopped: see serve.log")
    try:
        model = json.load(urllib.request.urlopen(url + "/v1/model", timeout=5))
        if eval(condition, {}, {"model": model}):
            print(f"{condition}: after {time.monotonic() - start:.1f} s")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"{condition}: not within {limit} s")
PYEOF
}

teach() {  # teach TASK LABELS VERSION: feed a task's samples, train it at once, wait until it is served
    $REBQ feed "$DATA" --url "$URL" --labels "$2" --task "$1"
    "$PY" -c "import urllib.request as u; print(u.urlopen(u.Request('$URL/v1/tasks/$1/train', method='POST')).read().decode())"
    wait_for 300 "model['version'] >= $3"
}

wait_for 240 "'version' in model"
teach first vehicles,clothes 1
teach second food,plants 2
$REBQ bench load --url "$URL" --concurrency 64 --requests "$REQUESTS" --single-requests 100 \
    --mix complete=0.4,image=0.3,text=0.3 --data "$DATA" --state-dir "$STATE" \
    --config "$CONFIG" --out "$OUT/bench-load.json"
[ -n "${SKIP_SWAP:-}" ] || $REBQ bench swap --url "$URL" --swaps 10 --concurrency 64 --data "$DATA" --out "$OUT/bench-swap.json"
"$PY" -c "import json, urllib.request as u; print(json.dumps(json.load(u.urlopen('$URL/v1/model'))['updater'], indent=1))" \
    >"$OUT/updater.json"
