"""The volume and instance model: states, transitions, rules and service functions.

Nothing here speaks HTTP, SQL or runs a subprocess; it reaches the outside world
only through its ports: the metadata store, by role (:mod:`volumed.domain.store`, with
the values of :mod:`volumed.domain.values`), and the images
(:mod:`volumed.domain.storage`).
"""
