"""The host manager's tables as SQLAlchemy Core metadata (the migrations create exactly these).

Domains (their XML and runtime state), the timeline of every launch step, and secret
definitions; secret values live in 0600 files beside the database, never in it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

domains = sa.Table(
    "domains",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("xml", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="shutoff"),
    sa.Column("reason", sa.String(32), nullable=False, default="unknown"),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("run_dir", sa.Text, nullable=True),
    sa.Column("launch", sa.Integer, nullable=False, default=0),
    sa.Column("sev_handle", sa.Integer, nullable=True),
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("domain", sa.String(36), nullable=False),
    sa.Column("launch", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("party", sa.String(32), nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Index("ix_timeline_domain_launch", "domain", "launch"),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("xml", sa.Text, nullable=False),
    sa.Column("has_value", sa.Boolean, nullable=False, default=False),
)
