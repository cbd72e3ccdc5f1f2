"""Lease epochs: each claim of a job is numbered, and its stages work in a folder of their own.

``jobs.lease_epoch`` counts the claims of a job (``claim_next`` adds one). A claim's stages write
into ``<state>/jobs/<job_id>/claims/<epoch>/`` and a finished stage's folder is moved into the
job's folder only by the daemon that still holds that claim (``JobStore.fenced``): a daemon whose
lease was taken over while it was paused can no longer change the new owner's files. Null for
jobs not claimed since this revision: their next claim is number 1.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_epoch", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_epoch")
