"""Alembic environment of the inventory.

mpguard runs it through mpguard.inventory.migrate with its own connection (already inside a
transaction, so the whole upgrade commits or rolls back as one). A developer writing a new
migration runs the alembic CLI from the repository root (pyproject's [tool.alembic]) with a
database URL: `alembic -x url=sqlite:///dev.db revision --autogenerate --rev-id 0002 -m "..."`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from mpguard.inventory.schema import metadata


def _run(connection: sa.Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from mpguard.inventory.db import resolve_url

    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = sa.create_engine(resolve_url(url, None))
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
