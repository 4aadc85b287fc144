"""``fresh_inprocess``: a server of a test's own, in process (tests/inprocess.py)."""

from tests.inprocess import fresh_inprocess

__all__ = ["fresh_inprocess"]
