"""The web console's static files (served by :mod:`ztnode.transport.console`)."""
