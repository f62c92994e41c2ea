import contextlib
import logging
from logging.config import fileConfig

from flask import current_app

from alembic import context

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
# disable_existing_loggers=False: migrations also run inside processes (tests, tools) whose
# loggers exist already; the default would silence every nubo.* logger from then on.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    from app.models.vms import in_schema_comparison  # indexes only some databases have
    conf_args.setdefault("include_object", in_schema_comparison)
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        # Several processes may start together (make run on two machines): one migrates,
        # the others wait for it here and then find nothing left to do.
        with migration_lock(connection):
            context.configure(
                connection=connection,
                target_metadata=get_metadata(),
                **conf_args
            )

            with sqlite_foreign_keys_off(connection), context.begin_transaction():
                context.run_migrations()
                check_sqlite_foreign_keys(connection)


@contextlib.contextmanager
def sqlite_foreign_keys_off(connection):
    """SQLite's batch mode copies a table and drops the old one: with foreign keys enforced
    that drop fails when rows refer to the table (or, with ON DELETE CASCADE, deletes those
    rows), so an install with data could not upgrade. SQLite's documented procedure: keys off
    outside the transaction, check them before it commits, on again after."""
    from sqlalchemy import text
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.execute(text("PRAGMA foreign_keys=OFF"))  # outside a transaction: it takes effect
        connection.commit()
    try:
        yield
    finally:
        if sqlite:
            connection.execute(text("PRAGMA foreign_keys=ON"))
            connection.commit()


def check_sqlite_foreign_keys(connection):
    from sqlalchemy import text
    if connection.dialect.name == "sqlite":
        broken = connection.execute(text("PRAGMA foreign_key_check")).all()
        if broken:
            raise RuntimeError(f"The migration would leave rows whose foreign keys point nowhere: {broken[:10]}")


@contextlib.contextmanager
def migration_lock(connection):
    """A server-wide lock for the migration: PostgreSQL advisory lock, MariaDB GET_LOCK.
    SQLite needs none: its write lock already serialises the migration transaction."""
    from sqlalchemy import text
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(73120001)"))
        connection.commit()
    elif dialect in ("mysql", "mariadb"):
        connection.execute(text("SELECT GET_LOCK('nubo-migrations', 600)"))
        connection.commit()
    try:
        yield
    finally:
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(73120001)"))
            connection.commit()
        elif dialect in ("mysql", "mariadb"):
            connection.execute(text("SELECT RELEASE_LOCK('nubo-migrations')"))
            connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
