"""Retry requests: the earlier attempt whose stages a retry may reuse, and the stage to start from.

``jobs.retry_request`` holds daemon/jobs/records.py's RetryRequest as JSON; null for every job
that is not a retry (and for every job made before this revision), which then runs whole.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("retry_request", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("retry_request")
