"""Alembic's entry point: migrates the connection `CaseStore.upgrade` hands over, or, when
there is none (writing a new revision), the store `DATABASE_URL` names:

    from alembic import command
    from activities.store import CaseStore, migrations
    CaseStore(url).upgrade()  # with DATABASE_URL=url in the environment
    command.revision(migrations(), "why", autogenerate=True, rev_id="0003")
"""

from alembic import context
from sqlmodel import SQLModel

from activities.store import CaseStore  # registers every table on SQLModel.metadata
from config.settings import Settings


def migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=SQLModel.metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    migrate(connection)
else:
    store = CaseStore(Settings().database_url)
    with store.engine.begin() as opened:
        migrate(opened)
    store.engine.dispose()
