"""Finding 7: API tokens are stored as digests; reading the database gives no usable token."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test import Client

from models_admin.api.tokens import issue_token
from models_admin.models import ApiToken

pytestmark = pytest.mark.django_db


def test_the_database_holds_a_digest_and_the_key_works_only_in_full(viewer):
    key = issue_token(viewer)

    row = ApiToken.objects.get(user=viewer)
    assert row.digest == hashlib.sha256(key.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM models_admin_apitoken")
        dumped = repr(cursor.fetchall())
    assert key not in dumped and key[8:] not in dumped
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/hosts/").status_code == 200
    # What a stolen dump holds does not authenticate.
    for stolen in (row.digest, row.prefix, key[:-1]):
        assert Client(HTTP_AUTHORIZATION=f"Token {stolen}").get("/api/hosts/").status_code == 401


def test_no_clear_text_token_table_is_installed():
    assert "authtoken_token" not in connection.introspection.table_names()


def test_the_migration_turns_drf_clear_keys_into_digests(viewer):
    import importlib

    from django.apps import apps
    from django.utils import timezone

    migration = importlib.import_module("models_admin.migrations.0010_api_token_digests")
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamptz)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, viewer.pk, timezone.now()])

    with connection.schema_editor() as editor:
        migration.digest_drf_tokens(apps, editor)

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/hosts/").status_code == 200
