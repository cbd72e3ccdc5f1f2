"""Work removals: one row per job whose work folder retention removed (daemon/jobs/retention.py).

A table of its own rather than a column of ``jobs``: a job's record stays as it was, and the
primary key lets exactly one of several daemons record each removal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from daemon.store.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_removals",
        sa.Column("job_id", sa.String(255), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("removed_at", UtcDateTime, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("bytes_freed", sa.BigInteger),
        sa.Column("outputs", sa.JSON),
    )


def downgrade() -> None:
    op.drop_table("work_removals")
