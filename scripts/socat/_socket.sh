# Sourced by the examples: the socket memoryd listens on (same default as memoryd itself).
if [ -n "${MEMORYD_SOCKET:-}" ]; then
  SOCK=$MEMORYD_SOCKET
elif [ -n "${XDG_RUNTIME_DIR:-}" ]; then
  SOCK=$XDG_RUNTIME_DIR/memoryd/memoryd.sock
else
  SOCK=/tmp/memoryd-$(id -u)/memoryd.sock
fi
