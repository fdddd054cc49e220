"""Alembic migrations of ratchet's own tables (version table `ratchet_alembic_version`)."""
