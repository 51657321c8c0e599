#!/bin/sh
# Save a memory with a caller-supplied 4-d vector, then search with a nearby vector.
# (Without "vector", memoryd embeds the text itself when an embedding provider is configured.)
# Several requests on one connection: replies may come back in any order; match them by id.
. "$(dirname "$0")/_socket.sh"
socat -t 5 - "UNIX-CONNECT:$SOCK" <<'JSON'
{"jsonrpc":"2.0","id":1,"method":"memory.save","params":{"category":"preference","content":"Prefers dark roast coffee","vector":[0.9,0.1,0.0,0.1]}}
JSON
socat -t 5 - "UNIX-CONNECT:$SOCK" <<'JSON'
{"jsonrpc":"2.0","id":2,"method":"memory.search","params":{"query":"coffee","vector":[0.8,0.2,0.0,0.1],"limit":3}}
JSON
