"""The ``volumed`` command line: the server, client and admin commands."""
