"""memoryd: the memory sidecar for agent-core."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
