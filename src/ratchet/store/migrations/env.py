"""Alembic environment: ratchet runs migrations itself on an open connection."""

from alembic import context

from ratchet.store.glance import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
