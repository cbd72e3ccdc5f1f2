"""Private scenes: whether a job's page is left out of the site's lists, and the key its folder is named with.

``jobs.private`` is false for every job made before this revision (the outbox folder stays
``<job_id>``); ``jobs.page_key`` holds the random key of a private job's folder,
``<job_id>.<page_key>``, made once when the job first becomes private and kept, so that every
daemon sharing the store names the folder alike, and a job made public again while it waits can
have its private folder found and deleted.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("page_key", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("page_key")
        batch.drop_column("private")
