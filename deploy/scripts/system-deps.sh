#!/usr/bin/env bash
# Check for Python >= 3.11 and install the system packages twinedge's tests and tools use,
# when they are missing: python3.X-venv (Debian ships venv without ensurepip),
# mosquitto + mosquitto-clients (MQTT interop), mbpoll (Modbus interop),
# postgresql (the cloud's production store), haproxy (the load balancer in front of cloud replicas),
# nodejs + npm (the node-opcua server that plays a foreign PLC in the OPC-UA tests),
# chromium (the browser the /docs page is tested in), wrk (the dashboard benchmark's load generator);
# and, where the distribution has it, linuxcnc-uspace (LinuxCNC's standalone G-code interpreter rs274, which the
# program harvester's path lengths are compared with; without it the tests use its recorded figures). Debian/Ubuntu only.
# PYTHON names the interpreter the virtualenv is made with (default python3), as in the Makefile.
set -euo pipefail

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "twinedge needs Python 3.11 or newer, and '$PY' is not installed: install python3 (3.11+)" >&2
    exit 1
fi
version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "twinedge needs Python 3.11 or newer; $PY is Python $version." >&2
    echo "Install a newer Python (e.g. python3.11) and run: make PYTHON=python3.11" >&2
    exit 1
fi

need=()
# Debian and Ubuntu split venv's pip bootstrap (ensurepip) into python3.X-venv.
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=("python${version}-venv")
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    need+=(postgresql)
fi
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The browser tests launch /usr/bin/chromium itself (Debian's package), never a downloaded one.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)

optional=()
command -v rs274 >/dev/null 2>&1 || optional+=(linuxcnc-uspace)

if [ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    if [ ${#need[@]} -eq 0 ]; then
        exit 0  # only optional packages missing: the tests say what they use instead
    fi
    echo "apt-get not found: install ${need[*]} with your package manager" >&2
    exit 1
fi
echo "installing system packages: ${need[*]} ${optional[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; elif [ ${#need[@]} -eq 0 ]; then
        exit 0  # only optional packages missing
    else
        echo "run as root or install: ${need[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Packages only: services are started by the tests themselves on 127.0.0.1.
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ] && ! $SUDO apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null 2>&1; then
    echo "${optional[*]} is not available here: the G-code path-length tests use the recorded rs274 figures"
fi
