"""testing layer of ztnode (see docs/architecture.md)."""
