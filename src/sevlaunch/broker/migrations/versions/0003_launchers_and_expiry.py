"""Named launchers and launch expiry.

A ``launchers`` table (SHA-256 of each token, limits, rate bucket); each launch and audit row
names its launcher (existing launches belong to ``default``, the launcher of
``--launcher-token-file``); launches keep their sealed TEK ‖ TIK only while they wait for a
measurement, and an expired launch has its own state. A partial index holds the open launches.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PENDING = sa.text("state = 'awaiting-measurement'")


def upgrade() -> None:
    op.create_table(
        "launchers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("max_open", sa.Integer, nullable=True),
        sa.Column("rate", sa.Float, nullable=True),
        sa.Column("burst", sa.Integer, nullable=True),
        sa.Column("bucket", sa.Float, nullable=True),
        sa.Column("bucket_at", sa.Float, nullable=True),
    )
    with op.batch_alter_table("launches") as batch:  # SQLite rebuilds the table for NULL keys
        batch.alter_column("sealed_keys", existing_type=sa.LargeBinary, nullable=True)
        batch.add_column(
            sa.Column("launcher", sa.String(64), nullable=False, server_default="default")
        )
    op.add_column("audit", sa.Column("launcher", sa.String(64), nullable=True))
    # Claimed by a broker before revision 0002 that never decided: no secret left; refused.
    op.execute(
        "UPDATE launches SET state = 'refused', reason = 'interrupted', "
        "finished_at = expires_at WHERE state = 'measuring'"
    )
    op.execute(
        "UPDATE launches SET state = 'expired' WHERE state = 'refused' AND reason = 'expired'"
    )
    op.execute("UPDATE launches SET sealed_keys = NULL WHERE state != 'awaiting-measurement'")
    op.create_index(
        "ix_launches_pending",
        "launches",
        ["launcher", "expires_at"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_launches_pending", "launches")
    op.drop_column("audit", "launcher")
    op.execute("UPDATE launches SET state = 'refused', reason = 'expired' WHERE state = 'expired'")
    keys = sa.table("launches", sa.column("sealed_keys", sa.LargeBinary))
    op.execute(keys.update().where(keys.c.sealed_keys.is_(None)).values(sealed_keys=b""))
    with op.batch_alter_table("launches") as batch:
        batch.drop_column("launcher")
        batch.alter_column("sealed_keys", existing_type=sa.LargeBinary, nullable=False)
    op.drop_table("launchers")
