#!/bin/bash
# The quick start: installs what is needed, builds, and serves a default
# export, a 1 GiB sparse file under var/, on 0.0.0.0:10809 until Ctrl-C.
# Extra arguments go to 'nbdplex serve' (e.g. -l 127.0.0.1:10809).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh Release
mkdir -p var
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-l 0.0.0.0:10809)
exec build/nbdplex serve -e default=file:"$PWD/var/default.img",size=1G "${args[@]}"
