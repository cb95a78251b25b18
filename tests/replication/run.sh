#!/usr/bin/env bash
# Replication against a real S3 store: the release binary uploads archived experiments to a
# single-node Garage (2.5.0) started here, and rclone, an independent S3 client, downloads what
# arrived and checks it against the experiment's manifest.
#
#   bash tests/replication/run.sh [--no-install] [--build-garage]
#
# Scenarios, in order, one benchcam each (test pattern with noise, 640x480 at 30 fps, 8 s clips
# at 30 Mbit/s: ~30 MB clips, more than the 16 MiB part size, so every clip goes multipart):
#   upload       a 14 s experiment is verified; rclone lists exactly the manifest's files and
#                manifest.json, each download's SHA-256 matches; figures: throughput and the
#                `replicate` thread's CPU per MB (hashing + signing + sending)
#   kill9        benchcam is killed with SIGKILL once a part is acknowledged, restarted, and
#                finishes: resent bytes <= one part, Garage saw no acknowledged part twice
#   store_down   Garage is killed mid-upload: the experiment goes failed naming the connection;
#                Garage restarted + POST /api/v1/replication/retry: verified
#   wrong_key    a wrong secret: failed with the S3 error, health degraded after failing_after
#                (10 s), /metrics counts it, every local file still matches its manifest
#   secret_mode  a secret file of mode 644: health names "readable by others", nothing uploaded
#   delete_after [experiments] delete_after_upload: the local folder goes after the upload is
#                verified (retention runs once a minute: up to ~70 s)
# Each check prints `pass: ...` or `fail: ...`, each measurement `figure: ...`; the last line is
# `N passed, M failed` and the exit status is non-zero on any failure. ~2.5 min.
#
# Garage: ${BENCHCAM_GARAGE:-~/.cache/benchcam-garage/bin/garage}; when missing it is built
# with `cargo install --locked garage --version 2.5.0` into ~/.cache/benchcam-garage (~16 min
# uncached, on 2 cores). `--build-garage` only builds it (when missing) and exits: tests/run.sh
# does that in the background at low priority from its start. rclone: Debian's, installed when
# missing (as root).
# The benchcam binary: ${BENCHCAM_BIN:-target/release/benchcam}, built when missing. Every
# cargo command runs under flock /tmp/benchcam-cargo.lock (one build at a time on the box).
# Work files (configs, data dirs, logs) go to a temp dir under target/replication, removed
# after a run that passed and kept (its path printed) after one that failed.
set -u

install=1 build_only=0
for arg in "$@"; do
    case "$arg" in
        --no-install) install=0 ;;
        --build-garage) build_only=1 ;;
        -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tests/replication/run.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
garage="${BENCHCAM_GARAGE:-$HOME/.cache/benchcam-garage/bin/garage}"
bin="${BENCHCAM_BIN:-$root/target/release/benchcam}"
part_size=$((16 * 1024 * 1024))
t_start=$SECONDS

passed=0 failed=0
pass() { echo "pass: $*"; passed=$((passed + 1)); }
fail() { echo "fail: $*"; failed=$((failed + 1)); }
check() {  # check DESCRIPTION COMMAND... : pass when the command succeeds
    local what="$1"; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
figure() { echo "figure: $*"; }
note() { echo "replication: $*"; }

finish() {
    echo
    note "ran $((SECONDS - t_start)) s"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    exit
}

# ---- tools ------------------------------------------------------------------------------------
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [ -d "$cargo_bin" ]; then export PATH="$cargo_bin:$PATH"; fi

if [ ! -x "$garage" ]; then
    if [ "$install" = 0 ]; then
        fail "garage: no $garage (run without --no-install to build it)"; finish
    fi
    note "building Garage 2.5.0 into ~/.cache/benchcam-garage (~16 min uncached)"
    t0=$SECONDS
    # LTO off and opt-level 1: a test store need not be fast, and the full release profile
    # takes far longer on 2 cores.
    CARGO_TARGET_DIR=/tmp/garage-build CARGO_PROFILE_RELEASE_LTO=false \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        CARGO_PROFILE_RELEASE_DEBUG=0 \
        flock /tmp/benchcam-cargo.lock cargo install --locked garage --version 2.5.0 \
        --root "$HOME/.cache/benchcam-garage" || { fail "garage: cargo install failed"; finish; }
    note "garage built in $((SECONDS - t0)) s"
    garage="$HOME/.cache/benchcam-garage/bin/garage"
fi
if [ "$build_only" = 1 ]; then
    note "$("$garage" --version 2>/dev/null | head -1) at $garage"
    exit 0
fi
if ! command -v rclone >/dev/null 2>&1; then
    if [ "$install" = 1 ] && [ "$(id -u)" -eq 0 ]; then
        note "installing rclone"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends rclone; }
    fi
    command -v rclone >/dev/null 2>&1 || { fail "rclone: missing (apt-get install rclone)"; finish; }
fi
if [ ! -x "$bin" ]; then
    if [ "$install" = 0 ]; then fail "benchcam: no $bin (cargo build --release)"; finish; fi
    (cd "$root" && flock /tmp/benchcam-cargo.lock cargo build --release --bin benchcam) ||
        { fail "benchcam: cargo build --release failed"; finish; }
fi
note "$("$garage" --version 2>/dev/null | head -1); $(rclone --version | head -1); $("$bin" --version 2>/dev/null | head -1)"

mkdir -p "$root/target/replication"
work="$(mktemp -d "$root/target/replication/run.XXXXXX")"
note "work dir $work"

# ---- processes: every one started here is stopped on exit ------------------------------------
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
        rm -rf "$work"
    else
        echo "replication: kept $work (logs: */benchcam.log, garage/garage.log)"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# j EXPR: evaluates EXPR on the JSON on stdin (as `d`) and prints it (JSON for lists/dicts).
j() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (list, dict)) else v)' "$1"
}

# ---- Garage: one single-node store for every scenario ----------------------------------------
g_dir="$work/garage"
mkdir -p "$g_dir"
s3_port="$(free_port)" rpc_port="$(free_port)" admin_port="$(free_port)"
metrics_token="metrics-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$g_dir/garage.toml" <<TOML
metadata_dir = "$g_dir/meta"
data_dir = "$g_dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin_port"
metrics_token = "$metrics_token"
admin_token = "admin-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOML
endpoint="http://127.0.0.1:$s3_port"
g() { "$garage" -c "$g_dir/garage.toml" "$@"; }

garage_pid=""
garage_start() {
    # Not through g(): $! must be garage itself, not a subshell running the function.
    "$garage" -c "$g_dir/garage.toml" server >>"$g_dir/garage.log" 2>&1 &
    garage_pid=$!
    pids+=("$garage_pid")
    local _
    for _ in $(seq 100); do
        # Any HTTP answer (403 without a signature) means the S3 API is up.
        if curl -s -o /dev/null "$endpoint/"; then return 0; fi
        kill -0 "$garage_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "garage did not come up; log:" >&2
    tail -20 "$g_dir/garage.log" >&2
    return 1
}
garage_kill() {
    kill -KILL "$garage_pid" 2>/dev/null
    wait "$garage_pid" 2>/dev/null
}
# The number of UploadPart requests Garage has counted since it started (admin /metrics).
upload_part_requests() {
    curl -sf -H "Authorization: Bearer $metrics_token" "http://127.0.0.1:$admin_port/metrics" |
        awk '/^api_s3_request_counter\{/ && /api_endpoint="UploadPart"/ { n += $NF } END { print n + 0 }'
}

garage_start || { fail "garage starts"; finish; }
node_id="$(g node id -q 2>/dev/null | cut -c1-16)"
g layout assign -z dc1 -c 1G "$node_id" >/dev/null &&
    g layout apply --version 1 >/dev/null &&
    g key create benchcam-test >"$g_dir/key.txt" &&
    g bucket create lab >/dev/null &&
    g bucket allow --read --write --owner lab --key benchcam-test >/dev/null ||
    { fail "garage: layout, key and bucket"; cat "$g_dir/key.txt"; finish; }
key_id="$(awk -F': *' '/Key ID/ { print $2; exit }' "$g_dir/key.txt" | tr -d ' ')"
secret="$(awk -F': *' '/Secret key/ { print $2; exit }' "$g_dir/key.txt" | tr -d ' ')"
[ -n "$key_id" ] && [ -n "$secret" ] || { fail "garage: key id and secret in 'key create'"; cat "$g_dir/key.txt"; finish; }
note "garage on $endpoint (admin $admin_port), key $key_id"
# The first layout takes a moment to reach the bucket table; a write proves the store is ready.
for _ in $(seq 50); do
    curl -s -o /dev/null -w '%{http_code}' "$endpoint/lab/" | grep -q 403 && break
    sleep 0.2
done

export RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other RCLONE_CONFIG_G_ENDPOINT="$endpoint"
export RCLONE_CONFIG_G_ACCESS_KEY_ID="$key_id" RCLONE_CONFIG_G_SECRET_ACCESS_KEY="$secret"
export RCLONE_CONFIG_G_REGION=garage RCLONE_CONFIG_G_FORCE_PATH_STYLE=true
export RCLONE_CONFIG="$work/rclone.conf"   # none: the remote comes from the variables only
# rclone 1.60's S3 backend cannot take AWS_CA_BUNDLE (set by some CI images and proxies:
# "LoadCustomCABundleError: ... unsupported transport"); the store is plain http anyway.
rclone() { env -u AWS_CA_BUNDLE rclone "$@"; }
for _ in $(seq 50); do rclone lsf G:lab >/dev/null 2>&1 && break; sleep 0.2; done

printf '%s\n' "$secret" >"$work/secret"
chmod 600 "$work/secret"

# ---- benchcam ---------------------------------------------------------------------------------
bc_pid="" base="" bc_dir=""
# bc_config NAME [EXTRA TOML...]: writes $work/NAME/benchcam.toml; sets bc_dir and base.
bc_config() {
    local name="$1"; shift
    bc_dir="$work/$name"
    mkdir -p "$bc_dir"
    local port; port="$(free_port)"
    base="http://127.0.0.1:$port"
    local replication="" experiments="" extra
    for extra in "$@"; do
        case "$extra" in
            experiments.*) experiments+="${extra#experiments.}"$'\n' ;;
            *) replication+="$extra"$'\n' ;;
        esac
    done
    cat >"$bc_dir/benchcam.toml" <<TOML
[service]
data_dir = "$bc_dir/data"
listen = "127.0.0.1:$port"
[camera]
source = "pattern"
width = 640
height = 480
fps = 30
pattern_noise = true
[recording]
clip_length = "8s"
bitrate_kbps = 30000
[auto_recording]
enabled = true
pre_roll = "2s"
post_roll = "1s"
[gpio]
backend = "sim"
[experiments]
$experiments
[replication]
enabled = true
endpoint = "$endpoint"
bucket = "lab"
access_key_id = "$key_id"
$replication
TOML
    grep -q '^secret_access_key_file' "$bc_dir/benchcam.toml" ||
        echo "secret_access_key_file = \"$work/secret\"" >>"$bc_dir/benchcam.toml"
}
bc_start() {
    "$bin" run --config "$bc_dir/benchcam.toml" >>"$bc_dir/benchcam.log" 2>&1 &
    bc_pid=$!
    pids+=("$bc_pid")
    local _
    for _ in $(seq 100); do
        curl -sf "$base/api/v1/health" >/dev/null 2>&1 && return 0
        kill -0 "$bc_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "benchcam did not come up; log:" >&2
    tail -20 "$bc_dir/benchcam.log" >&2
    return 1
}
bc_stop() {
    kill -INT "$bc_pid" 2>/dev/null
    local _
    for _ in $(seq 100); do kill -0 "$bc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bc_pid" 2>/dev/null
    wait "$bc_pid" 2>/dev/null
}
api() { curl -sf "$base/api/v1/$1"; }
post() {  # post PATH [JSON]
    local body="${2:-}"
    [ -n "$body" ] || body='{}'
    curl -sf -X POST -H 'Content-Type: application/json' -d "$body" "$base/api/v1/$1"
}

# experiment ID SECONDS: records one experiment (after the pre-roll has filled), stops it and
# saves the manifest the stop returned in $bc_dir/ID.manifest.json.
experiment() {
    local id="$1" secs="$2"
    sleep 3   # the 2 s pre-roll must exist
    post experiments "{\"experiment_id\": \"$id\"}" >/dev/null || { echo "start $id refused" >&2; return 1; }
    sleep "$secs"
    post "experiments/$id/stop" >"$bc_dir/$id.manifest.json" || { echo "stop $id refused" >&2; return 1; }
}

# wait_state ID STATE TIMEOUT: polls the experiment's replication state every 0.2 s; on
# success prints the seconds since the first poll at which it was first seen `uploading`
# (empty when never seen) and when it reached STATE.
wait_state() {
    local id="$1" want="$2" timeout="$3"
    python3 - "$base/api/v1/experiments/$id" "$want" "$timeout" <<'PY'
import json, sys, time, urllib.request
url, want, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.monotonic()
uploading = None
state = None
while time.monotonic() - t0 < timeout:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            rep = json.load(r).get("replication") or {}
    except Exception:
        rep = {}
    state = rep.get("state")
    now = time.monotonic() - t0
    if state == "uploading" and uploading is None:
        uploading = now
    if state == want:
        print(f"{'' if uploading is None else round(uploading, 3)} {round(now, 3)}")
        sys.exit(0)
    time.sleep(0.2)
print(f"still {state} after {timeout} s", file=sys.stderr)
sys.exit(1)
PY
}

last_remote=""   # the rclone path of the experiment rclone_check saw last
# remote_of DESTINATION: s3://lab/x/ -> G:lab/x/
remote_of() { echo "G:${1#s3://}"; }

# rclone_check ID MANIFEST: what arrived under the experiment's destination is exactly the
# manifest's files + manifest.json, each download matches the manifest's SHA-256 and the
# uploaded manifest.json is the local one byte for byte.
rclone_check() {
    local id="$1" manifest="$2" label="$3"
    local dest; dest="$(api "experiments/$id" | j 'd["replication"]["destination"]')"
    local remote; remote="$(remote_of "$dest")"
    last_remote="$remote"
    local want got
    want="$( (j '"\n".join(f["name"] for f in d["files"])' <"$manifest"; echo manifest.json) | sort)"
    got="$(rclone lsf -R --files-only "$remote" 2>>"$bc_dir/rclone.log" | sort)"
    if [ "$want" = "$got" ]; then
        pass "$label: rclone lists exactly the manifest's $(echo "$want" | wc -l) files (with manifest.json) under $dest"
    else
        fail "$label: rclone lists under $dest: $(echo $got) ; the manifest has: $(echo $want)"
    fi
    local dl="$bc_dir/download-$id"
    rm -rf "$dl"
    if ! rclone copy "$remote" "$dl" 2>>"$bc_dir/rclone.log"; then
        fail "$label: rclone copy $remote"
        return
    fi
    local bad
    bad="$(python3 - "$manifest" "$dl" <<'PY'
import hashlib, json, os, sys
manifest, dl = json.load(open(sys.argv[1])), sys.argv[2]
bad = []
for f in manifest["files"]:
    p = os.path.join(dl, f["name"])
    if not os.path.exists(p):
        bad.append(f"{f['name']} missing")
        continue
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if h != f["sha256"] or os.path.getsize(p) != f["size"]:
        bad.append(f"{f['name']}: {os.path.getsize(p)} bytes sha256 {h}, manifest {f['size']} {f['sha256']}")
print("; ".join(bad))
PY
)"
    if [ -z "$bad" ]; then
        pass "$label: every downloaded file's SHA-256 and size match the manifest"
    else
        fail "$label: downloads differ from the manifest: $bad"
    fi
    check "$label: the uploaded manifest.json is byte-identical to the local one" \
        cmp -s "$dl/manifest.json" "$bc_dir/data/experiments/$id/manifest.json"
    rm -rf "$dl"
}

# The `replicate` thread's utime+stime in clock ticks.
replicate_ticks() {
    local t
    for t in /proc/"$bc_pid"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = replicate ]; then
            # Fields after the ")" of comm: state is field 3, utime 14 and stime 15.
            sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }'
            return 0
        fi
    done
    return 1
}

# ---- a. upload and verify ---------------------------------------------------------------------
scenario_upload() {
    echo; note "== upload and verify"
    bc_config upload
    bc_start || { fail "upload: benchcam starts"; return; }
    local id=upload-1
    local ticks0
    experiment "$id" 14 || { fail "upload: experiment recorded"; return; }
    # The thread's time before the upload (the stop has just archived; it has not started yet).
    ticks0="$(replicate_ticks)" || { fail "upload: a thread named replicate runs"; return; }
    local m="$bc_dir/$id.manifest.json"
    local biggest; biggest="$(j 'max(f["size"] for f in d["files"] if f["name"] != "manifest.json")' <"$m")"
    if [ "$biggest" -gt "$part_size" ]; then
        pass "upload: the largest clip is $biggest bytes (> 16 MiB part size: multipart)"
    else
        fail "upload: the largest clip is $biggest bytes, not > 16 MiB (no multipart tested)"
    fi
    local times
    if times="$(wait_state "$id" verified 120)"; then
        pass "upload: verified"
    else
        fail "upload: not verified within 120 s: $(api "experiments/$id" | j 'd["replication"]')"
        return
    fi
    local ticks1; ticks1="$(replicate_ticks)"
    local rep; rep="$(api "experiments/$id" | j 'd["replication"]')"
    local total; total="$(echo "$rep" | j 'd["bytes_total"]')"
    local t_up="${times% *}" t_ver="${times#* }"
    [ -n "$t_up" ] || t_up=0
    figure "$(python3 -c "
mb = $total / 1e6
secs = max($t_ver - $t_up, 0.2)
print(f'upload: {mb:.1f} MB in {secs:.1f} s (uploading -> verified, polled at 0.2 s): {mb / secs:.1f} MB/s')")"
    figure "$(python3 -c "
import os
tck = os.sysconf('SC_CLK_TCK')
mb = $total / 1e6
cpu_ms = ($ticks1 - $ticks0) * 1000 / tck
print(f'upload: replicate thread CPU {cpu_ms:.0f} ms for {mb:.1f} MB = {cpu_ms / mb:.2f} ms/MB (SHA-256 + signing + sending)')")"
    check "upload: files_verified = files ($(echo "$rep" | j '(d["files_verified"], d["files"])'))" \
        test "$(echo "$rep" | j 'd["files_verified"] == d["files"]')" = True
    rclone_check "$id" "$m" upload
    bc_stop
}

# ---- b. kill -9 mid-upload --------------------------------------------------------------------
scenario_kill9() {
    echo; note "== benchcam killed with SIGKILL mid-upload"
    bc_config kill9 'max_rate = "4MB"'
    bc_start || { fail "kill9: benchcam starts"; return; }
    local id=kill9-1
    local requests0; requests0="$(upload_part_requests)"
    experiment "$id" 6 || { fail "kill9: experiment recorded"; return; }
    local journal="$bc_dir/data/replication/experiment.$id.json"
    # Once a multipart file has an acknowledged part and the next one is being sent (in_flight):
    # the kill then always cuts a part off mid-body, the case a resume must not double.
    if python3 - "$journal" <<'PY'
import json, sys, time
t0 = time.monotonic()
while time.monotonic() - t0 < 60:
    try:
        d = json.load(open(sys.argv[1]))
    except Exception:
        d = {}
    if d.get("state") == "uploading" and any(
        f.get("upload_id") and f.get("parts") and f.get("in_flight") and not f.get("verified")
        for f in d.get("files", [])
    ):
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
    then
        kill -KILL "$bc_pid"
        wait "$bc_pid" 2>/dev/null
        local acked; acked="$(j 'sum(len(f.get("parts") or []) for f in d["files"])' <"$journal")"
        pass "kill9: killed with $acked part(s) acknowledged in the journal and the next in flight"
    else
        fail "kill9: no acknowledged part while uploading within 60 s: $(cat "$journal" 2>/dev/null | head -c 600)"
        return
    fi
    bc_start || { fail "kill9: benchcam restarts"; return; }
    if wait_state "$id" verified 120 >/dev/null; then
        pass "kill9: verified after the restart"
    else
        fail "kill9: not verified within 120 s after the restart: $(api "experiments/$id" | j 'd["replication"]')"
        return
    fi
    local rep; rep="$(api "experiments/$id" | j 'd["replication"]')"
    local resent; resent="$(echo "$rep" | j 'd["bytes_resent"]')"
    figure "kill9: bytes resent after the SIGKILL: $resent (part size $part_size)"
    check "kill9: bytes resent ($resent) <= one part ($part_size)" test "$resent" -le "$part_size"
    local m="$bc_dir/$id.manifest.json"
    local parts; parts="$(python3 -c "
import json
m = json.load(open('$m'))
print(sum(-(-f['size'] // $part_size) for f in m['files'] if f['size'] > $part_size))")"
    local requests; requests=$(($(upload_part_requests) - requests0))
    figure "kill9: UploadPart requests Garage counted: $requests for $parts parts"
    check "kill9: no acknowledged part sent twice: $requests UploadPart requests <= $parts parts + 1" \
        test "$requests" -le $((parts + 1))
    check "kill9: Garage's metrics count UploadPart requests at all" test "$requests" -gt 0
    rclone_check "$id" "$m" kill9
    bc_stop
}

# ---- c. Garage stopped mid-upload -------------------------------------------------------------
scenario_store_down() {
    echo; note "== Garage killed mid-upload"
    bc_config store_down 'max_rate = "4MB"'
    bc_start || { fail "store_down: benchcam starts"; return; }
    local id=store-down-1
    experiment "$id" 6 || { fail "store_down: experiment recorded"; return; }
    # Kill the store once some bytes went up and the upload is still going.
    if python3 - "$base/api/v1/experiments/$id" <<'PY'
import json, sys, time, urllib.request
t0 = time.monotonic()
while time.monotonic() - t0 < 60:
    rep = json.load(urllib.request.urlopen(sys.argv[1], timeout=5)).get("replication") or {}
    if rep.get("state") == "uploading" and 0 < rep.get("bytes_done", 0) < rep.get("bytes_total", 0) / 2:
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
    then
        garage_kill
        pass "store_down: Garage killed while uploading"
    else
        fail "store_down: never saw the upload under way: $(api "experiments/$id" | j 'd["replication"]')"
        return
    fi
    if wait_state "$id" failed 60 >/dev/null; then
        pass "store_down: the experiment went failed"
    else
        fail "store_down: not failed within 60 s of the store going: $(api "experiments/$id" | j 'd["replication"]')"
    fi
    local err; err="$(api "experiments/$id" | j 'd["replication"]["error"] or ""')"
    note "store_down: error: $err"
    if [ -n "$err" ] && echo "$err" | grep -qiE "connect|127\.0\.0\.1:$s3_port|$endpoint"; then
        pass "store_down: the error names the connection or the endpoint"
    else
        fail "store_down: the error does not name the connection or endpoint: '$err'"
    fi
    garage_start || { fail "store_down: Garage restarts"; return; }
    post replication/retry >/dev/null || fail "store_down: POST /api/v1/replication/retry"
    if wait_state "$id" verified 120 >/dev/null; then
        pass "store_down: verified after Garage came back and a retry"
    else
        fail "store_down: not verified within 120 s of the retry: $(api "experiments/$id" | j 'd["replication"]')"
        return
    fi
    figure "store_down: attempts $(api "experiments/$id" | j 'd["replication"]["attempts"]'), bytes resent $(api "experiments/$id" | j 'd["replication"]["bytes_resent"]')"
    rclone_check "$id" "$bc_dir/$id.manifest.json" store_down
    bc_stop
}

# ---- d. wrong key -----------------------------------------------------------------------------
scenario_wrong_key() {
    echo; note "== wrong secret key"
    # As long and of the same alphabet as the real one, but not it.
    local wrong; wrong="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s\n' "${wrong:0:${#secret}}" >"$work/wrong-secret"
    chmod 600 "$work/wrong-secret"
    bc_config wrong_key "secret_access_key_file = \"$work/wrong-secret\"" 'failing_after = "10s"'
    bc_start || { fail "wrong_key: benchcam starts"; return; }
    local id=wrong-key-1
    experiment "$id" 2 || { fail "wrong_key: experiment recorded"; return; }
    local t_stop=$SECONDS
    if wait_state "$id" failed 60 >/dev/null; then
        pass "wrong_key: the experiment went failed"
    else
        fail "wrong_key: not failed within 60 s: $(api "experiments/$id" | j 'd["replication"]')"
    fi
    local err; err="$(api "experiments/$id" | j 'd["replication"]["error"] or ""')"
    note "wrong_key: error: $err"
    if echo "$err" | grep -qE '403|SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId'; then
        pass "wrong_key: the error names 403 / the S3 error code"
    else
        fail "wrong_key: the error names neither 403 nor an S3 error code: '$err'"
    fi
    # failing_after = 10 s from the first failure.
    local health="" status="" _
    for _ in $(seq 40); do
        health="$(api health)"
        status="$(echo "$health" | j 'd["status"]')"
        [ "$status" = degraded ] && echo "$health" | j 'd["problems"]' | grep -q '"replication:' && break
        sleep 0.5
    done
    local after=$((SECONDS - t_stop))
    if [ "$status" = degraded ] && echo "$health" | j 'd["problems"]' | grep -q '"replication:'; then
        pass "wrong_key: health degraded with a replication: problem ${after} s after the stop: $(echo "$health" | j '[p for p in d["problems"] if p.startswith("replication:")]')"
    else
        fail "wrong_key: health not degraded with a replication: problem after ${after} s: $health"
    fi
    local metric; metric="$(curl -sf "$base/metrics" | grep '^benchcam_replication_experiments{state="failed"}')"
    check "wrong_key: /metrics has benchcam_replication_experiments{state=\"failed\"} 1 ($metric)" \
        test "$(echo "$metric" | awk '{ print $NF }')" = 1
    local bad
    bad="$(python3 - "$bc_dir/data/experiments/$id" <<'PY'
import hashlib, json, os, sys
folder = sys.argv[1]
m = json.load(open(os.path.join(folder, "manifest.json")))
bad = []
for f in m["files"]:
    p = os.path.join(folder, f["name"])
    if not os.path.exists(p) or hashlib.sha256(open(p, "rb").read()).hexdigest() != f["sha256"]:
        bad.append(f["name"])
print(" ".join(bad))
PY
)"
    check "wrong_key: every local file still matches its manifest SHA-256 ${bad:+(not: $bad)}" test -z "$bad"
    bc_stop
}

# ---- e. secret readable by others -------------------------------------------------------------
scenario_secret_mode() {
    echo; note "== secret file readable by others"
    cp "$work/secret" "$work/open-secret"
    chmod 644 "$work/open-secret"
    bc_config secret_mode "secret_access_key_file = \"$work/open-secret\""
    bc_start || { fail "secret_mode: benchcam starts"; return; }
    local problems; problems="$(api health | j 'd["problems"]')"
    if echo "$problems" | grep -q "readable by others"; then
        pass "secret_mode: health problems name it: $problems"
    else
        fail "secret_mode: health problems do not say 'readable by others': $problems"
    fi
    local id=secret-mode-1
    experiment "$id" 2 || { fail "secret_mode: experiment recorded"; return; }
    sleep 3
    local listed; listed="$(rclone lsf -R --files-only "G:lab/" 2>/dev/null | grep -c "/$id/")"
    check "secret_mode: nothing uploaded ($listed objects under .../$id/, uploaded_bytes $(api replication | j 'd["uploaded_bytes"]'))" \
        test "$listed" -eq 0
    bc_stop
}

# ---- f. delete_after_upload -------------------------------------------------------------------
# Retention runs once a minute from the service's start, so this benchcam is started first and
# checked last: the wrong_key and secret_mode scenarios (which upload nothing) run meanwhile.
f_pid="" f_base="" f_dir="" f_verified_at=""
scenario_delete_after_start() {
    echo; note "== delete_after_upload (started now, checked after the others)"
    bc_config delete_after 'experiments.delete_after_upload = true'
    bc_start || { fail "delete_after: benchcam starts"; return; }
    local id=delete-after-1
    experiment "$id" 2 || { fail "delete_after: experiment recorded"; return; }
    if wait_state "$id" verified 60 >/dev/null; then
        pass "delete_after: verified"
    else
        fail "delete_after: not verified within 60 s: $(api "experiments/$id" | j 'd["replication"]')"
        return
    fi
    f_verified_at=$SECONDS
    rclone_check "$id" "$bc_dir/$id.manifest.json" delete_after
    f_pid="$bc_pid" f_base="$base" f_dir="$bc_dir"
}
scenario_delete_after_finish() {
    [ -n "$f_pid" ] || return
    echo; note "== delete_after_upload: the local folder"
    bc_pid="$f_pid" base="$f_base" bc_dir="$f_dir"
    local id=delete-after-1
    local folder="$bc_dir/data/experiments/$id" t0=$f_verified_at _
    for _ in $(seq 150); do [ -e "$folder" ] || break; sleep 0.5; done
    if [ -e "$folder" ]; then
        fail "delete_after: $folder still there $((SECONDS - t0)) s after verified"
    else
        pass "delete_after: the local folder went $((SECONDS - t0)) s after verified"
    fi
    local remote="$last_remote" left
    left="$(rclone lsf -R --files-only "$remote" 2>/dev/null | wc -l)"
    check "delete_after: the uploaded copy stays ($left objects under $remote)" test "$left" -gt 0
    bc_stop
}

scenario_upload
scenario_kill9
scenario_store_down
scenario_delete_after_start
scenario_wrong_key
scenario_secret_mode
scenario_delete_after_finish
finish
