"""alembic environment: drctl passes the connection in config.attributes."""

from alembic import context

from drctl.catalog.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - drctl always passes a connection
    raise RuntimeError("drctl migrations run through drctl.catalog.db.Catalog.migrate")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
