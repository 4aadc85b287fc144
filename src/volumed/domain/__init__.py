"""The volume and instance model: states, transitions, rules and service functions.

Nothing here speaks HTTP, SQL or runs a subprocess; it reaches the outside world
only through the ports declared in :mod:`volumed.domain.ports`.
"""
