"""Several ``volumed serve`` processes on one PostgreSQL database and one data directory."""
