"""Data-plane adapters implementing :class:`volumed.domain.storage.StorageDriver`."""

from __future__ import annotations

from volumed.storage._extents import copy_written
from volumed.storage._tar import ImportLimits
from volumed.storage.ext4 import Ext4ImageDriver

__all__ = ["Ext4ImageDriver", "ImportLimits", "copy_written"]
