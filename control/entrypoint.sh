#!/bin/sh
# Control server entrypoint: `pymesh control serve` with settings from the environment, so a
# Deployment can configure it without a command line. Extra arguments are passed through.
set -eu
exec pymesh control serve \
    --config-dir "${PYMESH_CONFIG_DIR:-/etc/pymesh/config}" \
    --listen "${PYMESH_LISTEN:-0.0.0.0:15010}" \
    --admin "${PYMESH_ADMIN:-0.0.0.0:15014}" \
    --data-dir "${PYMESH_DATA_DIR:-/var/lib/pymesh}" \
    "$@"
