"""Set names and paths stored exactly, even when they are not valid UTF-8.

From now on ``jobs.set_name`` and ``jobs.source_path`` hold names through
inbox_protocol/file_names.py's escapes: '%' as %25, each byte that is not UTF-8 as %XX. Names stored
before held no such byte (the database refused them), so only their '%' needs escaping.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("set_name", "source_path")


def upgrade() -> None:
    for column in _COLUMNS:
        op.execute(sa.text(f"UPDATE jobs SET {column} = replace({column}, '%', '%25') WHERE {column} LIKE '%!%%' ESCAPE '!'"))


def downgrade() -> None:
    # Names holding bytes that are not UTF-8 cannot go back: the old schema could not hold them.
    for column in _COLUMNS:
        op.execute(sa.text(f"UPDATE jobs SET {column} = replace({column}, '%25', '%') WHERE {column} LIKE '%!%25%' ESCAPE '!'"))
