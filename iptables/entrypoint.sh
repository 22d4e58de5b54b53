#!/bin/sh
# Init container entrypoint: write the capture rules into this network namespace and exit.
# Settings come from PYMESH_* environment variables (see `pymesh iptables --help`); arguments are
# passed on, so `... pymesh-init clean` removes the rules and `... pymesh-init --dry-run` prints them.
# Exit status: 0 written, 1 a command failed (the previous rules were restored), 2 a bad setting.
set -eu
exec pymesh iptables "$@"
