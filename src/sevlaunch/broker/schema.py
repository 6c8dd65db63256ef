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
