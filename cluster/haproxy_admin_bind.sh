#!/bin/sh
# Runs Ray Serve's HAProxy with its statistics and Prometheus ports bound to WARMSERVE_HAPROXY_ADMIN_HOST.
#
# Serve writes HAProxy's config with those two ports bound on every interface (`bind *:8404`,
# `bind :9101`) and offers no setting for their address. Serve starts HAProxy through this script
# (RAY_SERVE_HAPROXY_BINARY_PATH, set by cluster/serve_environment.py): it rewrites those two bind lines
# of the config Serve just wrote (the `-f` argument; the client-facing bind always names a host, so it
# is left alone), then replaces itself with the real binary, so Serve sees the pid and command line it
# expects.
set -eu
config=""
previous=""
for argument in "$@"; do
  if [ "$previous" = "-f" ]; then config="$argument"; fi
  previous="$argument"
done
if [ -n "$config" ] && [ -f "$config" ]; then
  sed -i -E "s/^([[:space:]]*)bind (\*)?:([0-9]+)[[:space:]]*$/\1bind ${WARMSERVE_HAPROXY_ADMIN_HOST}:\3/" "$config"
fi
if [ "$WARMSERVE_HAPROXY_BINARY" -ef "$0" ]; then
  echo "haproxy_admin_bind.sh: WARMSERVE_HAPROXY_BINARY names this script, not HAProxy" >&2; exit 2
fi
exec "$WARMSERVE_HAPROXY_BINARY" "$@"
