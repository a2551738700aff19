"""Alembic environment of the SQL journal, run only through ``LiveJournal``.

``LiveJournal`` hands the open connection in ``config.attributes["connection"]`` (there is
no alembic.ini and no URL here), so a migration runs inside the journal's own transaction:
on SQLite and PostgreSQL alike, a migration killed halfway leaves the previous revision.
"""

from __future__ import annotations

from alembic import context

from moola.tracking.livedb.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the live journal's migrations run through moola.tracking.livedb.LiveJournal "
        "(which passes its connection), not from the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
