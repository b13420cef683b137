"""The suite's own flush after a transactional test (``tests/conftest.py``): every row a test wrote goes,
the content types and permissions that migrate made stay, and a test that changed those gets Django's
flush instead."""

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from jobs.models import Job
from tests.conftest import KEPT_TABLES, _delete_rows, _flushed

pytestmark = pytest.mark.django_db(transaction=True)


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        found = {}
        for table in connection.introspection.django_table_names(only_existing=True):
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            found[table] = cursor.fetchone()[0]
        return found


def test_every_row_a_test_wrote_is_deleted_and_the_kept_tables_stay():
    kept = {table: count for table, count in counts().items() if table in KEPT_TABLES}
    user = User.objects.create_user("flushed")
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    Job.objects.create(function="tests.jobs.add", queue="default")
    assert _delete_rows("default")
    assert {table: count for table, count in counts().items() if table not in KEPT_TABLES} == dict.fromkeys(
        _flushed["default"][0], 0
    )
    assert {table: count for table, count in counts().items() if table in KEPT_TABLES} == kept
    assert kept["auth_permission"] > 0


def test_a_test_that_changed_the_kept_tables_is_left_to_djangos_flush():
    ContentType.objects.create(app_label="elsewhere", model="thing")
    User.objects.create_user("not flushed here")
    assert not _delete_rows("default")
    assert User.objects.exists()
