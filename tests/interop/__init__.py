"""Interoperability tests against libzt 1.8.4, a real ZeroTier core (see docs/testing.md)."""
