"""Production line (issue #12): stations, travellers (one per board and batch), completed steps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "line_stations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(43), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_line_stations"),
        sa.UniqueConstraint("kid", name="uq_line_stations_kid"),
        sa.UniqueConstraint("name", name="uq_line_stations_name"),
    )
    op.create_table(
        "line_boards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ueid", sa.String(66), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("station", sa.String(64), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traveller", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_line_boards"),
        sa.UniqueConstraint("batch", "mac", name="uq_line_boards_batch_mac"),
    )
    op.create_index("ix_line_boards_mac", "line_boards", ["mac"])
    op.create_index("ix_line_boards_ueid", "line_boards", ["ueid"])
    op.create_table(
        "line_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("board_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["board_id"], ["line_boards.id"],
                                name="fk_line_steps_board_id_line_boards"),
        sa.PrimaryKeyConstraint("id", name="pk_line_steps"),
        sa.UniqueConstraint("board_id", "step", name="uq_line_steps_board_id_step"),
    )
    op.create_index("ix_line_steps_board_id", "line_steps", ["board_id"])


def downgrade() -> None:
    op.drop_table("line_steps")
    op.drop_table("line_boards")
    op.drop_table("line_stations")
