#!/bin/sh
# Handshake: protocol version, server version, capabilities.
. "$(dirname "$0")/_socket.sh"
echo '{"jsonrpc":"2.0","id":1,"method":"system.hello"}' | socat -t 5 - "UNIX-CONNECT:$SOCK"
