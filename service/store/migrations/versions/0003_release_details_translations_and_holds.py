"""release contacts, DOI and link; language versions; holds for missed embargoes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contacts", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("doi", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("link", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("translation_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
    # Every stored release is its own original; its language is the primary subtag of lang.
    releases = sa.table(
        "releases", sa.column("id", sa.String), sa.column("lang", sa.String),
        sa.column("translation_key", sa.String), sa.column("language", sa.String),
    )  # fmt: skip
    connection = op.get_bind()
    for row in connection.execute(sa.select(releases.c.id, releases.c.lang)).all():
        connection.execute(
            releases.update()
            .where(releases.c.id == row.id)
            .values(translation_key=row.id, language=row.lang.split("-")[0].lower()[:8])
        )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.alter_column("translation_key", existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column("language", existing_type=sa.String(length=8), nullable=False)
        batch_op.create_index(batch_op.f("ix_releases_translation_key"), ["translation_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_translation_key"))
        batch_op.drop_column("language")
        batch_op.drop_column("translation_key")
        batch_op.drop_column("held_at")
        batch_op.drop_column("link")
        batch_op.drop_column("doi")
        batch_op.drop_column("contacts")
