#!/bin/sh
# A JSON-RPC batch: one line in, one array out (notifications get no entry).
. "$(dirname "$0")/_socket.sh"
echo '[{"jsonrpc":"2.0","id":1,"method":"system.hello"},{"jsonrpc":"2.0","method":"system.health"},{"jsonrpc":"2.0","id":2,"method":"memory.stats"}]' \
  | socat -t 5 - "UNIX-CONNECT:$SOCK"
