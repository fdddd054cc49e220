"""The store: studies, experiments and drivers in SQLite or PostgreSQL, with migrations."""
