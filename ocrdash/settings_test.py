"""Settings for the test suite: the real servers, PostgreSQL and Redis on 127.0.0.1.

Point OCRDASH_TEST_DATABASE_URL / OCRDASH_TEST_BROKER_URL elsewhere to use other servers
(an sqlite:/// URL runs the suite on SQLite, the demo's database). conftest.py stops the run
with a clear message when a server is not reachable, instead of passing silently.
"""

import os

# The tests' own key, set here and not left to a default: settings.py refuses to start without
# one. Worker processes the tests start inherit it from this environment.
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-key-3f9c1a7e5b2d4c6e8a0b1d3f5e7a9c2b4d6f8e0a1c3e5")

from .settings import *  # noqa: F403
from .settings import REST_FRAMEWORK, bound_by_the_server, env

# The test client and the browser tests speak plain HTTP to a local server; the HTTPS settings
# are checked by ocrdash/tests/test_production.py with the real settings.
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
# Every test's requests come from 127.0.0.1: throttling is tested on its own (test_throttling).
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
}

DATABASES = {
    "default": bound_by_the_server(
        env.db("OCRDASH_TEST_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ocrdash")
    )
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
