#!/bin/sh
# Control server entrypoint: `pymesh control serve` with settings from the environment, so a
# Deployment can configure it without a command line. Extra arguments are passed through.
# Always the authenticated channel (mTLS, join tokens); `--insecure` is refused on 0.0.0.0.
set -eu
cacerts="${PYMESH_CACERTS:-/etc/cacerts}"
set -- --trust-domain "${PYMESH_TRUST_DOMAIN:-cluster.local}" --cert-ttl "${PYMESH_CERT_TTL:-24h}" "$@"
if [ -f "$cacerts/ca-key.pem" ]; then  # Istio's plug-in CA layout
    set -- --ca-cert "$cacerts/ca-cert.pem" --ca-key "$cacerts/ca-key.pem" \
        --ca-chain "$cacerts/cert-chain.pem" --ca-root "$cacerts/root-cert.pem" "$@"
fi
exec pymesh control serve \
    --config-dir "${PYMESH_CONFIG_DIR:-/etc/pymesh/config}" \
    --listen "${PYMESH_LISTEN:-0.0.0.0:15010}" \
    --admin "${PYMESH_ADMIN:-0.0.0.0:15014}" \
    --data-dir "${PYMESH_DATA_DIR:-/var/lib/pymesh}" \
    "$@"
