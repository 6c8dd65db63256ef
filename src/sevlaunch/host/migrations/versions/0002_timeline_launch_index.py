"""The timeline is read per domain and launch: one index on both replaces the domain-only one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_timeline_domain_launch", "timeline", ["domain", "launch"])
    op.drop_index("ix_timeline_domain", "timeline")


def downgrade() -> None:
    op.create_index("ix_timeline_domain", "timeline", ["domain"])
    op.drop_index("ix_timeline_domain_launch", "timeline")
