#!/bin/sh
# Sidecar entrypoint: run `pymesh proxy "$@"` (e.g. --config PATH) as the proxy's uid and gid.
# The capture rules exempt exactly that uid/gid (PYMESH_PROXY_UID/PYMESH_PROXY_GID, default 1337,
# as given to the init container); running as anyone else would send the proxy's own connections
# back into itself, so that is refused. Started as root, it drops to that uid with setpriv.
set -eu
uid="${PYMESH_PROXY_UID:-1337}"
gid="${PYMESH_PROXY_GID:-$uid}"
if [ "$(id -u)" = 0 ] && [ "$uid" != 0 ]; then
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- pymesh proxy "$@"
fi
if [ "$(id -u)" != "$uid" ] || [ "$(id -g)" != "$gid" ]; then
    echo "pymesh-sidecar: running as $(id -u):$(id -g), but the capture rules exempt $uid:$gid;" \
         "the proxy's traffic would loop back into it (set PYMESH_PROXY_UID/PYMESH_PROXY_GID)" >&2
    exit 1
fi
exec pymesh proxy "$@"
