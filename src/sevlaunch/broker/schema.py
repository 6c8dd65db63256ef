"""The broker's tables as SQLAlchemy Core metadata (the migrations create exactly these).

Times are UNIX seconds (floats) so SQLite and PostgreSQL agree; policies are BIGINT because a
u32 policy does not fit PostgreSQL's signed INTEGER.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

trust_roots = sa.Table(
    "trust_roots",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("ark", sa.LargeBinary, nullable=False),
    sa.Column("ask", sa.LargeBinary, nullable=True),
    sa.Column("amd", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

workloads = sa.Table(
    "workloads",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("policies", sa.JSON, nullable=False),
    sa.Column("digests", sa.JSON, nullable=False),
    sa.Column("min_api_major", sa.Integer, nullable=False),
    sa.Column("min_api_minor", sa.Integer, nullable=False),
    sa.Column("min_build", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

workload_secrets = sa.Table(
    "workload_secrets",
    metadata,
    sa.Column(
        "workload",
        sa.String(64),
        sa.ForeignKey("workloads.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("guid", sa.String(36), primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

launches = sa.Table(
    "launches",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "workload",
        sa.String(64),
        sa.ForeignKey("workloads.name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("policy", sa.BigInteger, nullable=False),
    sa.Column("platform", sa.String(64), nullable=False),
    # TEK ‖ TIK sealed; erased (NULL) once the launch is released, refused or expired
    sa.Column("sealed_keys", sa.LargeBinary, nullable=True),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("reason", sa.String(48), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("finished_by", sa.String(64), nullable=True),
    sa.Column("launcher", sa.String(64), nullable=False, server_default="default"),
)
#: The open launches only, by launcher and expiry: what a launcher's limit counts and what the
#: sweeper scans; a launch leaves it when it is settled, so it stays as small as the open set.
#: Queries must say ``PENDING`` itself (a literal, not a parameter) for the planners to use it.
PENDING = launches.c.state == sa.literal_column("'awaiting-measurement'")
sa.Index(
    "ix_launches_pending",
    launches.c.launcher,
    launches.c.expires_at,
    sqlite_where=PENDING,
    postgresql_where=PENDING,
)

# Named launchers: a SHA-256 of each token (never the token), limits (NULL: the serving
# instance's defaults) and the token bucket of its launch rate.
launchers = sa.Table(
    "launchers",
    metadata,
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

chain_cache = sa.Table(
    "chain_cache",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("root", sa.String(64), nullable=False),
    sa.Column("verified_at", sa.Float, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(16), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(48), nullable=True),
    sa.Column("workload", sa.String(64), nullable=True),
    sa.Column("launch", sa.String(32), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("launcher", sa.String(64), nullable=True),
)

# One row (id 1): a token replaced whenever a trust root or a workload is added or removed, in
# the same transaction, so each broker process can tell whether its copies are still current.
catalog = sa.Table(
    "catalog",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.String(32), nullable=False),
)

# -- SEV-SNP post-attestation (sevlaunch.broker.snp) -------------------------------------------

# ARKs the owner pins for SNP besides AMD's own (an emulated platform's), by the SHA-256 of
# their DER as AMD's are pinned; ``product`` is the generation their CN names.
snp_roots = sa.Table(
    "snp_roots",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("product", sa.String(16), nullable=False),
    sa.Column("ark", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# An SNP workload is what its guests' reports must show: the owner's
# :class:`~sevlaunch.owner.snp.expectations.SnpExpectations` as JSON (the report data is
# each attestation's own and is never stored).
snp_workloads = sa.Table(
    "snp_workloads",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("expectations", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

snp_secrets = sa.Table(
    "snp_secrets",
    metadata,
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

# One row per challenge: the SHA-256 of the nonce (the nonce itself is not kept), the workload
# it was issued for and its expiry; ``used_at`` is set once, by the attestation that spends it.
# The sweeper erases rows past their expiry, used or not.
snp_nonces = sa.Table(
    "snp_nonces",
    metadata,
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
sa.Index("ix_snp_nonces_workload", snp_nonces.c.workload, snp_nonces.c.expires_at)
sa.Index("ix_snp_nonces_expires", snp_nonces.c.expires_at)
