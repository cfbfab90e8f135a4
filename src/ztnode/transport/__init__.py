"""transport layer of ztnode (see docs/architecture.md)."""
