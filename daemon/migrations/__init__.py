"""Alembic migrations of the job store; ``daemon.store.migrate`` runs them at start."""
