"""Helpers shared by several test modules: data files, fixed identities, the TCP pair harness
and scripted TCP peer. Test modules import from here, never from each other."""
