#!/usr/bin/env bash
# Shared set-up for scripts/test and scripts/demo: install what a fresh Debian machine lacks
# (PostgreSQL server binaries, PgBouncer for side-by-side benchmarks, a Python that pip may
# install into), then pgmux itself with the extras named in $PGMUX_EXTRAS.
# Sourced, not run: it may activate .venv in the caller's shell.

log() { printf '\n==> %s\n' "$*"; }

export DEBIAN_FRONTEND=noninteractive
export PIP_ROOT_USER_ACTION=ignore
export PIP_DISABLE_PIP_VERSION_CHECK=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -q
        apt_updated=1
    fi
    log "apt-get install -y $*"
    $SUDO apt-get install -y -q --no-install-recommends "$@"
}

# True when initdb can be found the way pgmux.testing.find_pg_bindir looks for it. A pg_config
# alone is not enough: libpq-dev ships one without the server.
have_postgres_server() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        return 0
    fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_postgres_server; then
    log "PostgreSQL server binaries found; not installing"
else
    apt_install postgresql
fi

# The benchmarks compare against PgBouncer; the tests do not need it, so a failure is not fatal.
if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
    log "pgbouncer found; not installing"
elif ! apt_install pgbouncer; then
    log "WARNING: could not install pgbouncer; benchmarks against it will be unavailable"
fi

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi

# Debian's own python3 refuses pip installs into the system (PEP 668); use a venv there.
# .venv is git-ignored.
externally_managed='import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
if ! python3 -m pip --version >/dev/null 2>&1 || python3 -c "$externally_managed"; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    log "creating virtualenv .venv"
    python3 -m venv .venv
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi

log "python: $(command -v python3) ($(python3 --version 2>&1))"
extras=${PGMUX_EXTRAS:-test}
log "python3 -m pip install -e '.[$extras]'"
python3 -m pip install -q -e ".[$extras]"
