"""Audit rows are append-only in the database too, and the three role groups exist.

On PostgreSQL a trigger refuses UPDATE and DELETE on the audit table, so not even a direct
SQL session of the application's user can rewrite history (TRUNCATE, a table owner's act, is
left to the operator who owns the database). SQLite, the demo's database, relies on the
model's guards alone.
"""

from django.db import migrations

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION ocrdash_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER models_admin_auditevent_append_only
    BEFORE UPDATE OR DELETE ON models_admin_auditevent
    FOR EACH ROW EXECUTE FUNCTION ocrdash_audit_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS models_admin_auditevent_append_only ON models_admin_auditevent;
DROP FUNCTION IF EXISTS ocrdash_audit_append_only();
"""

ROLES = ("viewer", "operator", "approver")


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


def add_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("models_admin", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(add_trigger, drop_trigger),
        migrations.RunPython(add_groups, migrations.RunPython.noop),
    ]
