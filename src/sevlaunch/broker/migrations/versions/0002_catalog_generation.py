"""Catalog generation: one row whose token changes with every trust root or workload change.

Broker processes keep workloads and parsed trust roots in memory and check this token in the
transaction that relies on them (see :mod:`sevlaunch.broker.catalog`).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    catalog = op.create_table(
        "catalog",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.String(32), nullable=False),
    )
    op.bulk_insert(catalog, [{"id": 1, "generation": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("catalog")
