"""Admin commands: they open the data directory and the database directly (no server
needed; SQLite's WAL lets them run beside a live server)."""
