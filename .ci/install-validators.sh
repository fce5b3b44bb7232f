#!/usr/bin/env bash
# --- validators for tests/clients (spam filter, HTML validity); sourced or run by .ci/run --------
# Idempotent: each tool is installed only when missing. Nothing here downloads outside the package
# registries (Debian apt, npm). The tests find them at: spamassassin on PATH, java on PATH, and
# vnu.jar under $VNU_PREFIX (or $VNU_JAR); they skip without them locally and fail in CI.
VNU_VERSION="26.9.27"  # the Nu HTML Checker release the tests were last checked with
VNU_PREFIX="${VNU_PREFIX:-$HOME/.cache/announce-vnu}"
VNU_JAR="${VNU_JAR:-$VNU_PREFIX/node_modules/vnu-jar/build/dist/vnu.jar}"

_apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${_APT_UPDATED:-}" ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
        _APT_UPDATED=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 install "$@" >/dev/null
}

# SpamAssassin 4.x (Debian bookworm: 4.0.1): scores every mail kind offline (-L).
if ! command -v spamassassin >/dev/null 2>&1; then
    echo "--- installing spamassassin (apt)"
    _apt_install spamassassin
fi

# Java 11+ runs the Nu HTML Checker (the machine ships Java 17).
if ! command -v java >/dev/null 2>&1; then
    echo "--- installing a Java runtime (apt)"
    _apt_install default-jre-headless
fi

# The Nu HTML Checker from npm; --ignore-scripts: its postinstall would fetch a JRE from outside npm.
if [ ! -f "$VNU_JAR" ] && command -v npm >/dev/null 2>&1; then
    echo "--- installing vnu-jar@$VNU_VERSION (npm, into $VNU_PREFIX)"
    mkdir -p "$VNU_PREFIX"
    npm install --prefix "$VNU_PREFIX" --ignore-scripts --no-audit --no-fund --loglevel=error \
        "vnu-jar@$VNU_VERSION" >/dev/null
fi
export VNU_JAR
echo "--- validators: $(spamassassin --version 2>/dev/null | head -n 1 || echo 'no spamassassin');" \
    "vnu $(java -jar "$VNU_JAR" --version 2>/dev/null || echo missing)"
