#!/usr/bin/env bash
# The issue-19 heavy user at full size on the embedded default (file store, SQLite queue, the
# real handler over HTTP under the local Functions-host stand-in): seed, then an export and a
# delete for the subject, each timed with its peak RSS. Azurite cannot hold this size on one
# machine in hours (its per-request cost grows with the blobs it holds: BENCHMARKS.md), so
# this is the size's measurement of *our* process against a ceiling of plain file copies,
# reads and unlinks (scripts/fs_ceiling.py); the Azurite rows are in the bench's `dsr` scenario.
#
#   [DSR_BINARY=<built binary>] bash scripts/bench_issue_size_local.sh \
#       [WORKSPACES RUNS_PER_WORKSPACE FILES_PER_RUN [DATA_DIR]]
#   default: 10 1000 100 -> 10 workspaces, the subject's 10,000 runs, ~1,000,000 of her blobs
#   (plus another user's as many beside them). Needs ~25 GB of disk and ~25 min here.
set -euo pipefail
cd "$(dirname "$0")/.."
WS=${1:-10}
RUNS=${2:-1000}
FILES=${3:-100}
if [ -n "${4:-}" ]; then
  DATA=$4
else
  # A scratch folder, removed at the end (the figures are printed; pass DATA_DIR to keep it).
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  DATA=$scratch/data
fi
# DSR_BINARY: a binary already built (CI runs this at a tiny size on its debug build).
if [ -n "${DSR_BINARY:-}" ]; then
  B=$(realpath "$DSR_BINARY")
  # Not passed on: the binary warns about DSR_ names it does not know.
  unset DSR_BINARY
else
  cargo build --release --quiet
  B=$PWD/target/release/azureml-dsr
fi
LOGS=$(dirname "$DATA")/logs
mkdir -p "$LOGS"
echo "data: $DATA  logs: $LOGS  load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "seed: %e s wall, peak RSS %M KB" "$B" --data-dir "$DATA" seed \
  --workspaces "$WS" --users 2 --runs-per-user "$RUNS" --files-per-run "$FILES" \
  --output-bytes 1024 --json 2>&1 | tail -2
# The ceiling: the same storage work on her blobs by the plainest code, on the same data.
python3 scripts/fs_ceiling.py "$DATA"
for kind in export delete; do
  rid="ISSUE-SIZE-${kind^^}"
  "$B" --data-dir "$DATA" submit --type "$kind" --upn alice@contoso.com --request-id "$rid" >/dev/null
  # Peak RSS sampled every 2 s too, to see when it happens (what /usr/bin/time cannot say).
  /usr/bin/time -f "$kind: %e s wall, peak RSS %M KB" -o "$LOGS/$kind.time" \
    "$B" --data-dir "$DATA" run --until-idle >"$LOGS/$kind.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    child=$(pgrep -P "$pid" | head -1 || true)
    [ -n "$child" ] && echo "$(date -u +%T) $(awk '/VmRSS/{print $2}' "/proc/$child/status" 2>/dev/null)"
    sleep 2
  done >"$LOGS/$kind.rss"
  wait "$pid"
  cat "$LOGS/$kind.time"
  echo "$kind: invocations by function: $(grep -o 'invocation succeeded function=[a-z-]*' "$LOGS/$kind.log" | sort | uniq -c | awk '{printf "%s %s, ", $4, $1}' | sed 's/function=//g')"
  echo "$kind: RSS over time (KB, every ~20 s): $(awk 'NR%10==1{printf "%s=%s ", $1, $2}' "$LOGS/$kind.rss")"
  "$B" --data-dir "$DATA" --json report "$rid" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("'"$kind"': status", r["status"], "counts", json.dumps(r["counts"]))'
done
