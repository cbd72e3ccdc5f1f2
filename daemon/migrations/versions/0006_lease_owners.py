"""Leases held by a process, not by a host name; each daemon's process in its row.

``jobs.lease_owner`` is the process key (daemon/this_process.py) of the daemon running the job:
two daemons that happen to share a name can no longer take each other's job for their own.
``daemons.process`` says which process wrote a daemon's row, so that a daemon starting later can
tell whether the name is still in use.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(255)))
    with op.batch_alter_table("daemons") as batch:
        batch.add_column(sa.Column("process", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("daemons") as batch:
        batch.drop_column("process")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_owner")
