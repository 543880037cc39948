"""Settings for the test suite: the real servers, PostgreSQL and Redis on 127.0.0.1.

Point OCRDASH_TEST_DATABASE_URL / OCRDASH_TEST_BROKER_URL elsewhere to use other servers
(an sqlite:/// URL runs the suite on SQLite, the demo's database). conftest.py stops the run
with a clear message when a server is not reachable, instead of passing silently.
"""

from .settings import *  # noqa: F403
from .settings import env

DATABASES = {
    "default": env.db("OCRDASH_TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ocrdash")
}
CELERY_BROKER_URL = env.str("OCRDASH_TEST_BROKER_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# One key for the test process and the worker processes it starts (they sign orders too).
OCRDASH_SIGNING_KEY_FILE = VAR_DIR / "test-keys" / "dashboard.key"  # noqa: F405
# Hashing passwords slowly is a feature in production and minutes of waste in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
