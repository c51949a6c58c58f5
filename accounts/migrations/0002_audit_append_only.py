"""The database itself refuses to change a line of the audit log.

UPDATE is refused on every backend; DELETE is refused on PostgreSQL. (SQLite empties tables
with DELETE between tests, and row triggers there cannot tell that from a real deletion;
the model refuses deletion on every backend.)
"""

from django.db import migrations


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            """
            CREATE OR REPLACE FUNCTION accounts_auditevent_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit log is append-only';
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        schema_editor.execute(
            """
            CREATE TRIGGER accounts_auditevent_append_only
            BEFORE UPDATE OR DELETE ON accounts_auditevent
            FOR EACH ROW EXECUTE FUNCTION accounts_auditevent_append_only();
            """
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            """
            CREATE TRIGGER accounts_auditevent_append_only
            BEFORE UPDATE ON accounts_auditevent
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
            """
        )


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            "DROP TRIGGER IF EXISTS accounts_auditevent_append_only ON accounts_auditevent"
        )
        schema_editor.execute("DROP FUNCTION IF EXISTS accounts_auditevent_append_only()")
    elif vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS accounts_auditevent_append_only")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
