#!/bin/sh
# Liveness, readiness and the store's state.
. "$(dirname "$0")/_socket.sh"
echo '{"jsonrpc":"2.0","id":1,"method":"system.health"}' | socat -t 5 - "UNIX-CONNECT:$SOCK"
