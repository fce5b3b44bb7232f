#!/usr/bin/env bash
# --- tools for the benchmarks' smoke runs (benchmarks/, docs/performance.md); sourced by .ci/run ---
# Idempotent: each tool is installed only when missing, from Debian's packages. Postfix gives
# smtp-sink (the SMTP server the fan-out benchmarks send into) and smtp-source (their reference);
# wrk loads the feed, nginx serves the same bytes as the reference. Neither daemon is started: a
# policy-rc.d refuses service starts during the install, and the benchmarks run their own copies.
_bench_apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy"
        created=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
    if [ -z "${_APT_UPDATED:-}" ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
        _APT_UPDATED=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 \
        --no-install-recommends install "$@" >/dev/null
    [ -z "$created" ] || $sudo rm -f "$policy"
}

_bench_missing=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || _bench_missing+=(postfix)
command -v wrk >/dev/null 2>&1 || _bench_missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || _bench_missing+=(nginx-light)
if [ "${#_bench_missing[@]}" -gt 0 ]; then
    echo "--- installing ${_bench_missing[*]} (apt) for the benchmarks"
    _bench_apt_install "${_bench_missing[@]}"
fi
export PATH="$PATH:/usr/sbin"
