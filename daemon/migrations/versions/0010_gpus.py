"""GPUs: which GPU each daemon was given, and which ran each job.

``daemons.gpu`` and ``jobs.gpu`` hold the daemon's CUDA_VISIBLE_DEVICES (``instarecon@N.service``
sets it to N: one daemon per GPU), the job's from the daemon that claimed it last; null where a
daemon was given none (every GPU visible, or none there).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gpu", sa.String(255)))
    with op.batch_alter_table("daemons") as batch:
        batch.add_column(sa.Column("gpu", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("daemons") as batch:
        batch.drop_column("gpu")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpu")
