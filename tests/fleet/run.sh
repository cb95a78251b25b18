#!/usr/bin/env bash
# The fleet (issue 12, parts 5 and 6), end to end with the release binary:
#
#  1. two benches in two network namespaces joined by a veth pair (10.77.0.1 and 10.77.0.2,
#     multicast on the link, nothing else): bench-a starts, then bench-b; each must list the
#     other in GET /api/v1/fleet. Prints the time from bench-b's start until bench-a lists it
#     ("new box visible after N ms"), and the other way round. When avahi-daemon is
#     installed (tests/run.sh installs it), bench-a's namespace runs it too, as the image
#     does, with the image's avahi service file: benchcam and avahi share port 5353, and
#     avahi must report no name conflict.
#  2. bench-b starts recording: bench-a sees cameras_recording go to 1 (the re-announcement).
#  3. `benchcam fleet-targets` run in bench-a's namespace writes a file_sd file with both.
#  4. bench-b stops (SIGTERM: goodbye): bench-a drops it; prints how long that took.
#     With BENCHCAM_FLEET_LONG=1 (~4 min more; not in CI) bench-b is started again, must
#     still be listed 110 s later (its refreshes keep it), and is then killed with SIGKILL:
#     prints how long bench-a takes to drop a bench that sent no goodbye.
#  5. promtool (when installed, or always with BENCHCAM_REQUIRE_PROMTOOL=1, as tests/run.sh
#     sets it): `promtool check metrics` on bench-a's live /metrics, `check config` on
#     packaging/prometheus/prometheus.yml, `check rules` and `test rules` on the alerts.
#
#   bash tests/fleet/run.sh            (as root: it creates namespaces; ~15 s)
#
# BENCHCAM_BIN picks the binary (default target/release/benchcam). Namespaces, veths and
# temp dirs are removed on exit. The last line is `fleet: N passed, M failed`.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${BENCHCAM_BIN:-$root/target/release/benchcam}"
prom="$root/packaging/prometheus"
passed=0 failed=0

ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo "fleet: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

[ -x "$bin" ] || { echo "fleet: no $bin (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "fleet: needs root (network namespaces)" >&2; exit 1; }
for tool in ip curl python3; do
    command -v "$tool" >/dev/null || { echo "fleet: $tool is missing" >&2; exit 1; }
done

tag="bc$$"
ns_a="$tag-a" ns_b="$tag-b"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    ip netns del "$ns_a" 2>/dev/null
    ip netns del "$ns_b" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# ---- two namespaces, one veth pair ------------------------------------------------------------
ip netns add "$ns_a" && ip netns add "$ns_b" || { echo "fleet: cannot create namespaces" >&2; exit 1; }
ip link add "$tag-va" type veth peer name "$tag-vb" || exit 1
ip link set "$tag-va" netns "$ns_a" && ip link set "$tag-vb" netns "$ns_b" || exit 1
for side in a b; do
    ns="$tag-$side" dev="$tag-v$side"
    addr=$([ "$side" = a ] && echo 10.77.0.1 || echo 10.77.0.2)
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev "$dev"
    ip -n "$ns" link set "$dev" multicast on up
done

start_bench() {  # start_bench SIDE: bench-SIDE in its namespace; sets started_ms
    local side="$1" ns="$tag-$1" dir="$work/$1"
    mkdir -p "$dir"
    cat >"$dir/benchcam.toml" <<TOML
[service]
data_dir = "$dir/data"
listen = "0.0.0.0:8080"
[camera]
source = "pattern"
width = 160
height = 120
fps = 5
[recording]
clip_length = "2s"
fragment_duration = "500ms"
[auto_recording]
enabled = false
[gpio]
backend = "sim"
[fleet]
name = "bench-$side"
TOML
    started_ms=$(date +%s%3N)
    ip netns exec "$ns" "$bin" run --config "$dir/benchcam.toml" >"$dir/log" 2>&1 &
    pids+=($!)
    eval "pid_$side=$!"
}

fleet_of() {  # fleet_of SIDE: GET /api/v1/fleet of bench-SIDE
    local addr=$([ "$1" = a ] && echo 10.77.0.1 || echo 10.77.0.2)
    ip netns exec "$tag-$1" curl -sf --max-time 2 "http://$addr:8080/api/v1/fleet"
}

# peer_field SIDE PEER FIELD: FIELD of PEER in SIDE's fleet view ("" when PEER is not listed)
peer_field() {
    fleet_of "$1" | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
try:
    view = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
for p in view["peers"]:
    if p["name"] == name:
        print(json.dumps(p[field]) if not isinstance(p[field], str) else p[field])
' "$2" "$3"
}

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds; 1 on timeout
    local end=$((SECONDS + $1)); shift
    while [ "$SECONDS" -lt "$end" ]; do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

healthy() { ip netns exec "$tag-$1" curl -sf --max-time 1 "http://$2:8080/api/v1/health" >/dev/null; }
lists() { [ "$(peer_field "$1" "$2" name)" = "$2" ]; }
lists_not() { fleet_of "$1" >/dev/null && ! lists "$1" "$2"; }

# avahi in bench-a's namespace, as on the image: its own config (no D-Bus, this namespace's
# interface only) and the image's service file.
avahi_pid=""
if command -v avahi-daemon >/dev/null; then
    mkdir -p "$work/avahi/services"
    cp "$root/image-build/overlay/etc/avahi/services/benchcam.service" "$work/avahi/services/"
    cat >"$work/avahi/avahi-daemon.conf" <<CONF
[server]
host-name=bench-a-avahi
use-ipv4=yes
use-ipv6=no
allow-interfaces=$tag-va
enable-dbus=no
[publish]
publish-workstation=no
CONF
    # avahi reads services only from /etc/avahi/services: ours is bind-mounted there inside
    # the mount namespace `ip netns exec` makes (a slave of the host's: nothing leaks out).
    # So is a private /run/avahi-daemon (its pid file): an avahi on the host does not matter.
    mkdir -p "$work/avahi/run" /run/avahi-daemon
    ip netns exec "$ns_a" sh -c 'mount --bind "$1/services" /etc/avahi/services &&
        mount --bind "$1/run" /run/avahi-daemon &&
        exec avahi-daemon --no-chroot --no-drop-root --no-rlimits --debug -f "$1/avahi-daemon.conf"' \
        sh "$work/avahi" >"$work/avahi/log" 2>&1 &
    avahi_pid=$!
    pids+=("$avahi_pid")
    avahi_up() { grep -qs 'Server startup complete' "$work/avahi/log"; }
    if wait_for 10 avahi_up; then
        ok "avahi-daemon runs in bench-a's namespace ($(grep -o 'avahi-daemon [0-9.]*' "$work/avahi/log" | head -1))"
    else
        fail "avahi-daemon did not start: $(tail -5 "$work/avahi/log")"
        avahi_pid=""
    fi
fi

start_bench a
wait_for 20 healthy a 10.77.0.1 || { echo "fleet: bench-a did not start"; cat "$work/a/log"; exit 1; }
start_bench b
b_started=$started_ms
wait_for 20 healthy b 10.77.0.2 || { echo "fleet: bench-b did not start"; cat "$work/b/log"; exit 1; }
b_ready=$(date +%s%3N)

# ---- 1. each lists the other ------------------------------------------------------------------
if wait_for 15 lists a bench-b; then
    now=$(date +%s%3N)
    ok "bench-a lists bench-b: new box visible after $((now - b_started)) ms from bench-b's start ($((now - b_ready)) ms after its page answered)"
else
    fail "bench-a does not list bench-b within 15 s: $(fleet_of a)"
fi
if wait_for 15 lists b bench-a; then
    ok "bench-b lists bench-a; visible $(($(date +%s%3N) - b_started)) ms after bench-b's start"
else
    fail "bench-b does not list bench-a within 15 s: $(fleet_of b)"
fi
url="$(peer_field a bench-b url)"
[ "$url" = "http://10.77.0.2:8080/" ] && ok "bench-b's link is $url" || fail "bench-b's link is '$url'"
state="$(peer_field a bench-b state)"
case "$state" in ok | degraded) ok "bench-b's state: $state" ;; *) fail "bench-b's state: '$state'" ;; esac
[ "$(peer_field a bench-b cameras)" = 1 ] && ok "bench-b has 1 camera" || fail "bench-b's cameras: $(peer_field a bench-b cameras)"
free="$(peer_field a bench-b free_bytes)"
[ "${free:-0}" -gt 0 ] 2>/dev/null && ok "bench-b's free space: $free bytes" || fail "bench-b's free_bytes: '$free'"
# The page link works from the other namespace: it is bench-b's own page.
page="$(ip netns exec "$ns_a" curl -sf --max-time 2 "$url")"
if grep -qi '<html' <<<"$page"; then
    ok "bench-b's page answers at its link from bench-a's namespace"
else
    fail "bench-b's page does not answer at $url"
fi

if [ -n "$avahi_pid" ]; then
    kill -0 "$avahi_pid" 2>/dev/null && ok "avahi still runs beside bench-a" || fail "avahi-daemon exited: $(tail -5 "$work/avahi/log")"
    if grep -qi 'conflict' "$work/avahi/log"; then
        fail "avahi reports a conflict: $(grep -i conflict "$work/avahi/log" | head -3)"
    else
        ok "avahi reports no name conflict with benchcam's mDNS"
    fi
    # avahi still answers on the shared port: an mDNS query for _http._tcp from bench-b's
    # namespace (from a port other than 5353, so the answer comes back by unicast) gets the
    # image's service "benchcam on bench-a-avahi".
    if ip netns exec "$ns_b" python3 - <<'PY'
import socket, struct, sys, time
name = b"".join(bytes([len(p)]) + p for p in (b"_http", b"_tcp", b"local")) + b"\0"
query = struct.pack(">6H", 0, 0, 1, 0, 0, 0) + name + struct.pack(">2H", 12, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.77.0.2"))
s.settimeout(0.5)
end = time.time() + 5
while time.time() < end:
    s.sendto(query, ("224.0.0.251", 5353))
    try:
        while True:
            data, _ = s.recvfrom(9000)
            if b"benchcam on bench-a-avahi" in data:
                sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
PY
    then
        ok "avahi beside bench-a answers an mDNS query for the image's _http._tcp service"
    else
        fail "avahi beside bench-a does not answer for _http._tcp: $(grep -i service "$work/avahi/log" | tail -3)"
    fi
fi

# ---- 2. a change is re-announced --------------------------------------------------------------
ip netns exec "$ns_b" curl -sf -X POST "http://10.77.0.2:8080/api/v1/cameras/cam0/recording/start" >/dev/null ||
    fail "cannot start recording on bench-b"
t0=$(date +%s%3N)
recording_seen() { [ "$(peer_field a bench-b cameras_recording)" = 1 ]; }
if wait_for 15 recording_seen; then
    ok "bench-a sees bench-b recording after $(($(date +%s%3N) - t0)) ms (announcements rate-limited to 1 per 5 s)"
else
    fail "bench-a does not see bench-b recording: $(fleet_of a)"
fi

# ---- 3. fleet-targets -------------------------------------------------------------------------
if ip netns exec "$ns_a" "$bin" fleet-targets --seconds 3 --out "$work/targets.json" 2>"$work/targets.log"; then
    if python3 - "$work/targets.json" <<'PY'
import json, sys
groups = json.load(open(sys.argv[1]))
benches = {g["labels"]["bench"]: g["targets"] for g in groups}
assert benches.get("bench-b") == ["10.77.0.2:8080"], benches
assert benches.get("bench-a") == ["10.77.0.1:8080"], benches
PY
    then
        ok "fleet-targets wrote both benches: $(tr -d ' \n' <"$work/targets.json")"
    else
        fail "fleet-targets' file: $(cat "$work/targets.json")"
    fi
else
    fail "fleet-targets failed: $(cat "$work/targets.log")"
fi

# ---- 4. a box that leaves drops out -----------------------------------------------------------
curl_metrics_ok=0
ip netns exec "$ns_a" curl -sf --max-time 5 "http://10.77.0.1:8080/metrics" >"$work/metrics.txt" && curl_metrics_ok=1
# shellcheck disable=SC2154  # set by start_bench through eval
kill -TERM "$pid_b"
t0=$(date +%s%3N)
if wait_for 15 lists_not a bench-b; then
    ok "bench-a dropped bench-b $(($(date +%s%3N) - t0)) ms after its SIGTERM (goodbye)"
else
    fail "bench-a still lists bench-b 15 s after it stopped"
fi

# ---- 4b. (BENCHCAM_FLEET_LONG=1, ~4 min, not in CI) refreshes; a box dies without a goodbye --
if [ "${BENCHCAM_FLEET_LONG:-0}" = 1 ]; then
    start_bench b
    if wait_for 20 lists a bench-b; then
        # A live bench stays listed past the 100 s limit: its refreshes (every 30 s) count.
        sleep 110
        seen="$(peer_field a bench-b last_seen_s)"
        if python3 -c 'import sys; sys.exit(not 0 <= float(sys.argv[1]) <= 35)' "${seen:-x}" 2>/dev/null; then
            ok "bench-b still listed after 110 s, last heard ${seen} s ago (refreshes every 30 s)"
        else
            fail "after 110 s bench-b's last_seen_s is '${seen}' (dropped, or refreshes not seen)"
        fi
        kill -KILL "$pid_b"
        t0=$(date +%s%3N)
        if wait_for 200 lists_not a bench-b; then
            ok "bench-a dropped bench-b $(($(date +%s%3N) - t0)) ms after its kill -9 (no goodbye)"
        else
            fail "bench-a still lists bench-b 200 s after its kill -9"
        fi
    else
        fail "the restarted bench-b does not appear"
    fi
fi

# ---- 5. promtool ------------------------------------------------------------------------------
if command -v promtool >/dev/null; then
    if [ "$curl_metrics_ok" = 1 ] && out="$(promtool check metrics <"$work/metrics.txt" 2>&1)"; then
        ok "promtool check metrics: bench-a's /metrics ($(grep -c '^# TYPE' "$work/metrics.txt") families) ${out:+($out)}"
    else
        fail "promtool check metrics: ${out:-no /metrics scrape}"
    fi
    # check config reads the file_sd files it names: give it the one fleet-targets wrote.
    mkdir -p "$work/prom"
    cp "$prom/alerts.yml" "$work/prom/"
    cp "$work/targets.json" "$work/prom/benchcam-targets.json" 2>/dev/null || echo '[]' >"$work/prom/benchcam-targets.json"
    for config in prometheus.yml prometheus-static.yml; do
        sed "s#/var/lib/prometheus/benchcam-targets.json#$work/prom/benchcam-targets.json#; s#/etc/prometheus/benchcam-alerts.yml#$work/prom/alerts.yml#" \
            "$prom/$config" >"$work/prom/$config"
        if out="$(promtool check config "$work/prom/$config" 2>&1)"; then
            ok "promtool check config $config"
        else
            fail "promtool check config $config: $out"
        fi
    done
    if out="$(promtool check rules "$prom/alerts.yml" 2>&1)"; then
        ok "promtool check rules alerts.yml: $(echo "$out" | grep -o 'SUCCESS: [0-9]* rules found')"
    else
        fail "promtool check rules: $out"
    fi
    if out="$(cd "$prom" && promtool test rules alerts.test.yml 2>&1)"; then
        ok "promtool test rules alerts.test.yml"
    else
        fail "promtool test rules: $out"
    fi
elif [ "${BENCHCAM_REQUIRE_PROMTOOL:-0}" = 1 ]; then
    fail "promtool is missing (apt-get install prometheus)"
else
    echo "skipped: promtool not installed (apt-get install --no-install-recommends prometheus)"
fi

finish
