"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
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
        "releases",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("guid", sa.String(length=400), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("lang", sa.String(length=35), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_releases_state_date"), ["state", "date"], unique=False)

    op.create_table(
        "site_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_scan_seconds", sa.Float(), nullable=True),
        sa.Column("last_scan_files", sa.Integer(), nullable=True),
        sa.Column("last_scan_problems", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_state")),
    )
    op.create_table(
        "sources",
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("release_id", sa.String(length=128), nullable=True),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("error_line", sa.Integer(), nullable=True),
        sa.Column("error_hint", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_sources")),
    )
    op.create_table(
        "release_topics",
        sa.Column("release_id", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_release_topics_release_id_releases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("release_id", "topic", name=op.f("pk_release_topics")),
    )
    with op.batch_alter_table("release_topics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_topics_topic"), ["topic"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("release_topics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_topics_topic"))

    op.drop_table("release_topics")
    op.drop_table("sources")
    op.drop_table("site_state")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_state_date"))
        batch_op.drop_index(batch_op.f("ix_releases_source"))

    op.drop_table("releases")
