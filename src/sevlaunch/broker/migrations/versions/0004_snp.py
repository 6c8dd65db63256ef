"""SEV-SNP post-attestation: pinned SNP roots, SNP workloads and their secrets, nonces.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snp_roots",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("ark", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "snp_workloads",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("expectations", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "snp_secrets",
        sa.Column(
            "workload",
            sa.String(64),
            sa.ForeignKey("snp_workloads.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("guid", sa.String(36), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "snp_nonces",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("nonce_hash", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "workload",
            sa.String(64),
            sa.ForeignKey("snp_workloads.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_snp_nonces_workload", "snp_nonces", ["workload", "expires_at"])
    op.create_index("ix_snp_nonces_expires", "snp_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_snp_nonces_expires", "snp_nonces")
    op.drop_index("ix_snp_nonces_workload", "snp_nonces")
    op.drop_table("snp_nonces")
    op.drop_table("snp_secrets")
    op.drop_table("snp_workloads")
    op.drop_table("snp_roots")
