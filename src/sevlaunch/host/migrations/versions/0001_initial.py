"""Initial schema, as the host manager created it before it had migrations: domains, the launch
timeline, secret definitions.

A database made by that version has these tables and no ``alembic_version``;
:func:`sevlaunch.host.migrate.upgrade` adopts it at this revision instead of running this.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("xml", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("run_dir", sa.Text, nullable=True),
        sa.Column("launch", sa.Integer, nullable=False),
        sa.Column("sev_handle", sa.Integer, nullable=True),
    )
    op.create_table(
        "timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(36), nullable=False),
        sa.Column("launch", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("party", sa.String(32), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_timeline_domain", "timeline", ["domain"])
    op.create_table(
        "secrets",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("xml", sa.Text, nullable=False),
        sa.Column("has_value", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for table in ("secrets", "timeline", "domains"):
        op.drop_table(table)
