"""volumed: a self-hosted KraftCloud Volumes API with real ext4 volumes."""

__version__ = "0.1.0"
