#!/usr/bin/env bash
# schemathesis against the running service: starts target/release/benchcam on a temp data dir
# (test-pattern camera, simulated GPIO, an access token), loads the OpenAPI document the
# service serves (GET /api/v1/openapi.json), and lets schemathesis generate requests for every
# operation for a bounded time, checking each answer: no 5xx, status codes, content types,
# headers and bodies as documented, bad input refused, auth not ignored. The service must
# also still be running at the end.
#
#   bash tests/schemathesis/run.sh [--max-time SECONDS] [--no-install]
#
#   --max-time S   schemathesis's time budget (default 100)
#   --no-install   do not create the venv / pip install (fail if missing)
#
# schemathesis and everything it pulls in are pinned in requirements.txt and installed into a
# venv at ${BENCHCAM_SCHEMATHESIS_VENV:-~/.cache/benchcam-schemathesis/venv} (created with
# python3 -m venv; Debian's python3-venv is installed when venv is missing). Every check runs
# but ignored_auth: its probes send wrong tokens, and after 5 of them the service answers 429
# (the login rate limit, README "Security") where the check accepts only 401/403;
# tests/openapi.rs walks every state-changing route without and with a wrong token instead.
# Per-operation statuses that are right for schema-valid requests: schemathesis.toml.
# Excluded: GET .../stream.mjpg, whose answer never ends, and GET .../ws, whose 101 hands the
# connection to WebSocket (the HTTP client then reuses it and reads WebSocket frames); both are
# covered by tests/web_api.rs. One worker: with two threads, CPython 3.11's ast.parse (which
# hypothesis calls) fails with "AST constructor recursion depth mismatch". The service's log is
# kept in $BENCHCAM_SCHEMATHESIS_LOG (default target/schemathesis/benchcam.log) and the
# schemathesis reports (JUnit, ndjson) in target/schemathesis/. It ends with the checks run
# (passed/failed, over all test cases) and `schemathesis operations: N passed, M failed`.
set -uo pipefail

max_time=100 install=1
while [ $# -gt 0 ]; do
    case "$1" in
        --max-time) max_time="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tests/schemathesis/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${BENCHCAM_BIN:-$root/target/release/benchcam}"
venv="${BENCHCAM_SCHEMATHESIS_VENV:-$HOME/.cache/benchcam-schemathesis/venv}"
out="$root/target/schemathesis"
log="${BENCHCAM_SCHEMATHESIS_LOG:-$out/benchcam.log}"
mkdir -p "$out"

# ---- schemathesis in its venv, pinned ---------------------------------------------------------
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    if [ "$install" = 0 ]; then
        echo "schemathesis: no venv at $venv (run without --no-install)" >&2
        exit 1
    fi
    t0=$SECONDS
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "schemathesis: installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } || exit 1
    fi
    rm -rf "$venv"
    python3 -m venv "$venv" || exit 1
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/requirements.txt" || exit 1
    echo "$want" >"$venv/.requirements.sha256"
    echo "schemathesis: venv ready in $((SECONDS - t0)) s"
fi
echo "schemathesis: $("$venv/bin/schemathesis" --version)"

# ---- the service ------------------------------------------------------------------------------
[ -x "$bin" ] || { echo "schemathesis: no $bin (cargo build --release)" >&2; exit 1; }
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$data/benchcam.toml" <<TOML
[service]
data_dir = "$data/data"
listen = "127.0.0.1:$port"
access_token = "$token"
[camera]
source = "pattern"
width = 160
height = 120
fps = 10
[recording]
clip_length = "2s"
fragment_duration = "500ms"
[auto_recording]
enabled = true
pre_roll = "0s"
post_roll = "0s"
[gpio]
backend = "sim"
TOML
"$bin" run --config "$data/benchcam.toml" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
    curl -sf "$base/api/v1/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "schemathesis: benchcam exited; log:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.1
done
# A clip and an archived experiment exist before schemathesis starts, so it meets real ones.
sleep 2.5
curl -sf -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"experiment_id": "before-schemathesis", "method": "seed"}' "$base/api/v1/experiments" >/dev/null &&
    curl -sf -X POST -H "Authorization: Bearer $token" "$base/api/v1/experiments/before-schemathesis/stop" >/dev/null ||
    { echo "schemathesis: could not make an experiment" >&2; exit 1; }

# ---- schemathesis -----------------------------------------------------------------------------
t0=$SECONDS
# From target/schemathesis: schemathesis keeps its cache (.schemathesis/) in the working directory.
cd "$out" || exit 1
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/api/v1/openapi.json" \
    --url "$base" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks ignored_auth \
    --exclude-path-regex '(stream\.mjpg|/ws)$' \
    --max-time "$max_time" \
    --workers 1 \
    --request-timeout 20 \
    --report junit,ndjson --report-dir "$out" \
    --no-color
rc=$?
echo "schemathesis: ran $((SECONDS - t0)) s, exit $rc"

alive=1
kill -0 "$pid" 2>/dev/null || { alive=0; echo "schemathesis: benchcam died during the run; log tail:" >&2; tail -20 "$log" >&2; }
panics="$(grep -c 'panicked at' "$log" || true)"
[ "$panics" = 0 ] || { echo "schemathesis: benchcam logged $panics panic(s):" >&2; grep -A3 'panicked at' "$log" | head -20 >&2; }

# Operations, test cases and checks passed/failed, from the reports: the JUnit one has a testcase
# per operation (and one for the stateful phase), the ndjson one every check of every case.
junit="$(ls -t "$out"/junit-*.xml 2>/dev/null | head -1)"
ndjson="$(ls -t "$out"/ndjson-*.ndjson 2>/dev/null | head -1)"
if [ -n "$junit" ] && [ -n "$ndjson" ]; then
    python3 - "$junit" "$ndjson" <<'PY'
import base64, collections, json, sys, xml.etree.ElementTree as ET
ops = {"passed": 0, "failed": 0, "skipped": 0}
for c in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    if c.get("name") == "Stateful tests":
        continue
    bad = c.find("failure") is not None or c.find("error") is not None
    ops["failed" if bad else "skipped" if c.find("skipped") is not None else "passed"] += 1
checks = collections.defaultdict(collections.Counter)
cases = set()
failures = []
def text(body, limit=300):
    """A request or response body from the report, decoded, on one line."""
    if isinstance(body, dict) and "$base64" in body:
        body = base64.b64decode(body["$base64"]).decode("utf-8", "replace")
    return json.dumps(body if body is not None else "")[:limit]
for line in open(sys.argv[2]):
    event = json.loads(line).get("ScenarioFinished")
    if not event:
        continue
    recorder = event.get("recorder", {})
    for case_id, results in (recorder.get("checks") or {}).items():
        cases.add(case_id)
        for r in results:
            checks[r["name"]][r["status"]] += 1
            if r["status"] == "failure":
                failures.append((recorder.get("label"), r, (recorder.get("interactions") or {}).get(case_id)))
# Each failed check with the request that made it and the answer, so a CI log says what to fix.
for label, r, interaction in failures[:8]:
    info = {k: v for k, v in r.items() if k not in ("name", "status")}
    print(f"schemathesis FAILED check {r['name']} on {label}: {json.dumps(info)[:600]}")
    if interaction:
        req, resp = interaction.get("request", {}), interaction.get("response") or {}
        print(f"schemathesis FAILED   request: {req.get('method')} {req.get('uri')} body {text(req.get('body'))}")
        print(f"schemathesis FAILED   answer: {resp.get('status_code')} {text(resp.get('content'))}")
print(f"schemathesis: checks over the {len(cases)} test cases in the report (passed/failed):")
for name in sorted(checks):
    c = checks[name]
    print(f"  {name:30} {c['success']:6} passed {c['failure']:4} failed")
print(f"schemathesis operations: {ops['passed']} passed, {ops['failed']} failed, {ops['skipped']} skipped")
PY
fi
[ "$rc" -eq 0 ] && [ "$alive" = 1 ] && [ "$panics" = 0 ]
