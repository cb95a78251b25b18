#!/usr/bin/env bash
# Tests the first-boot settings script (overlay/usr/lib/benchcam/benchcam-setup) on the host,
# against a scratch directory tree (BENCHCAM_SETUP_ROOT), in about a second: good values are
# applied, secrets redacted, bad values refused and reported, an unchanged file is not applied
# again, and `<redacted>` keeps what is set. The boot test (boot-test.sh) checks the same
# script on the booted image.
#
#   bash image-build/test-setup.sh
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/overlay/usr/lib/benchcam/benchcam-setup"
repo="$(cd "$here/.." && pwd)"

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "  ok: $1"; }
bad() { failed=$((failed + 1)); echo "  FAILED: $1"; }
check() {  # check DESCRIPTION COMMAND...
    local d="$1"; shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}

# fresh_root: a tree with what the script reads and writes.
fresh_root() {
    root="$(mktemp -d)"
    mkdir -p "$root/boot/firmware" "$root/etc/benchcam" "$root/var/lib/benchcam" "$root/usr/share"
    ln -s /usr/share/zoneinfo "$root/usr/share/zoneinfo"
    sed 's|^data_dir = .*|data_dir = "/var/lib/benchcam"|' "$repo/config/benchcam.toml" >"$root/etc/benchcam/benchcam.toml"
    echo benchcam >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tbenchcam\n' >"$root/etc/hosts"
}
run_setup() { BENCHCAM_SETUP_ROOT="$root" bash "$script" >"$root/log" 2>&1; }
setup_txt() { cat >"$root/boot/firmware/benchcam-setup.txt"; }
problems() { cat "$root/var/lib/benchcam/setup-problems.txt" 2>/dev/null; }

key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbUXkHOhz1DZmvGeJPyQ2dqFvwDUFkhW2XyQmMGa0eo lab@pc"

echo "== good file, Windows line ends and a BOM"
fresh_root
printf '\xef\xbb\xbf# lab 3\r\nhostname = Bench-3\r\nwifi_ssid="Lab Net"\r\nwifi_psk=correct horse battery\r\nwifi_country=de\r\naccess_token=s3cret-token\r\ntimezone=Europe/Berlin\r\nssh_authorized_key=%s\r\n' "$key" | setup_txt
run_setup
check "hostname applied, lowercased" grep -qx bench-3 "$root/etc/hostname"
check "hosts has 127.0.1.1 bench-3" grep -qP '^127\.0\.1\.1\tbench-3$' "$root/etc/hosts"
check "timezone link" [ "$(readlink "$root/etc/localtime")" = /usr/share/zoneinfo/Europe/Berlin ]
wpa="$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "wpa_supplicant: ssid as hex" grep -qx '    ssid=4c6162204e6574' "$wpa"
check "wpa_supplicant: passphrase, WPA2 and WPA3" grep -qx '    psk="correct horse battery"' "$wpa"
check "wpa_supplicant: country DE" grep -qx 'country=DE' "$wpa"
check "wpa_supplicant conf is root-only" [ "$(stat -c %a "$wpa")" = 600 ]
check "token in the config" grep -qx 'access_token = "s3cret-token"' "$root/etc/benchcam/benchcam.toml"
check "config keeps every other line" [ "$(grep -vc access_token "$root/etc/benchcam/benchcam.toml")" = "$(grep -vc access_token "$repo/config/benchcam.toml")" ]
check "ssh key installed" grep -qxF "$key" "$root/root/.ssh/authorized_keys"
check "ssh enabled" [ -L "$root/etc/systemd/system/multi-user.target.wants/ssh.service" ]
check "no problems file" [ ! -e "$root/var/lib/benchcam/setup-problems.txt" ]
check "passphrase redacted" grep -qx 'wifi_psk=<redacted>' "$root/boot/firmware/benchcam-setup.txt"
check "token redacted" grep -qx 'access_token=<redacted>' "$root/boot/firmware/benchcam-setup.txt"
check "no secret left in the file" bash -c "! grep -q -e horse -e s3cret '$root/boot/firmware/benchcam-setup.txt'"
check "other lines kept" grep -qx 'hostname = Bench-3' "$root/boot/firmware/benchcam-setup.txt"
run_setup
check "unchanged file is not applied again" grep -q 'unchanged since it was applied' "$root/log"
rm -rf "$root"

echo "== bad file: unknown key, short passphrase, bad zone; the rest still applies"
fresh_root
setup_txt <<'EOF'
hostname=lab-bench-7
wifi_ssid=LabNet
wifi_psk=short
colour=blue
timezone=Mars/Olympus
access_token=abc
EOF
run_setup
check "hostname still applied" grep -qx lab-bench-7 "$root/etc/hostname"
check "no Wi-Fi config" [ ! -e "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" ]
check "token not set" grep -qx 'access_token = ""' "$root/etc/benchcam/benchcam.toml"
check "timezone not set" [ ! -e "$root/etc/localtime" ]
check "problem: short passphrase" grep -q 'line 3: wifi_psk: must be 8-63 characters long (it is 5)' <(problems)
check "problem: unknown key" grep -q 'line 4: unknown key `colour`' <(problems)
check "problem: time zone" grep -q 'line 5: timezone: unknown time zone' <(problems)
check "problem: short token" grep -q 'line 6: access_token: must be 8-128 characters' <(problems)
check "problem: Wi-Fi off" grep -q 'line 2: wifi_ssid: its wifi_psk was rejected' <(problems)
check "five problems, one per line" [ "$(problems | wc -l)" = 5 ]
check "problems logged as warnings" [ "$(grep -c '^<4>problem:' "$root/log")" = 5 ]
check "bad passphrase: reason above it" grep -qx '# NOT APPLIED: must be 8-63 characters long (it is 5)' "$root/boot/firmware/benchcam-setup.txt"
check "bad passphrase redacted in its comment" grep -qx '# wifi_psk=<redacted>' "$root/boot/firmware/benchcam-setup.txt"
check "no secret left" bash -c "! grep -q -e short -e abc '$root/boot/firmware/benchcam-setup.txt'"
check "unknown key commented out" grep -qx '# colour=blue' "$root/boot/firmware/benchcam-setup.txt"
# the user fixes the passphrase in the rewritten file and uncomments the network name
sed -i 's/^# wifi_psk=.*/wifi_psk=long enough now/; s/^# wifi_ssid=/wifi_ssid=/' "$root/boot/firmware/benchcam-setup.txt"
run_setup
check "edited file applied again: Wi-Fi on" grep -qx '    psk="long enough now"' "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "reasons of fixed lines dropped" [ "$(grep -c '^# NOT APPLIED' "$root/boot/firmware/benchcam-setup.txt")" = 3 ]
check "one problem left: no wifi_country (the other bad lines are comments now)" bash -c "[ \"\$(wc -l <'$root/var/lib/benchcam/setup-problems.txt')\" = 1 ] && grep -q 'wifi_country is not set' '$root/var/lib/benchcam/setup-problems.txt'"
rm -rf "$root"

echo "== <redacted> keeps the configured network; a new network needs its passphrase"
fresh_root
printf 'wifi_ssid=LabNet\nwifi_psk=12345678\n' | setup_txt
run_setup
printf 'wifi_ssid=LabNet\nwifi_psk=<redacted>\nwifi_country=GB\n' | setup_txt
run_setup
check "same network kept" grep -qx '    psk="12345678"' "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "country added" grep -qx 'country=GB' "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "no problems" [ -z "$(problems)" ]
printf 'wifi_ssid=OtherNet\nwifi_psk=<redacted>\n' | setup_txt
run_setup
check "new network refused" grep -q 'a new network needs its wifi_psk' <(problems)
check "old network kept" grep -qx '    psk="12345678"' "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
printf 'no equals sign here\nwifi_ssid=Open Lab\nhostname=-bad-\nhostname=second\n' | setup_txt
run_setup
check "open network" grep -qx '    key_mgmt=NONE' "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
check "not key=value reported" grep -q 'line 1: not a key=value line' <(problems)
check "bad hostname reported" grep -q 'line 3: hostname: must be 1-63 letters' <(problems)
check "duplicate reported" grep -q 'line 4: `hostname` given twice' <(problems)
check "hostname unchanged" grep -qx benchcam "$root/etc/hostname"
rm -rf "$root"

echo "== a Latin-1 byte at a line end (Windows Notepad) does not swallow the next line"
fresh_root
printf 'wifi_ssid=Caf\xe9\nwifi_psk=latin-one-secret\naccess_token=abc\n' | setup_txt
LANG=C.UTF-8 run_setup
check "the passphrase line is redacted" grep -qx 'wifi_psk=<redacted>' "$root/boot/firmware/benchcam-setup.txt"
check "no secret left" bash -c "! grep -q -e latin-one-secret -e abc '$root/boot/firmware/benchcam-setup.txt'"
check "the short token is reported on its own line" grep -q 'line 3: access_token: must be 8-128' <(problems)
rm -rf "$root"

echo "== no file"
fresh_root
run_setup
check "no file: nothing to do" grep -q 'nothing to apply' "$root/log"
rm -rf "$root"

echo
echo "setup: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
