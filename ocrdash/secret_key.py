"""The one rule for DJANGO_SECRET_KEY: refuse to start without a real one.

Django signs sessions, password-reset links and messages with the key: a missing, published or
guessable one lets anyone forge a session. So the settings refuse, at import, a key that is
missing, one of the placeholders this project has ever shipped (``.env.example``'s value, the
old development constant), or too short or too uniform to be random (Django's own deploy check
asks for 50 characters and 5 distinct ones). The demo and the tests set their own key.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

VARIABLE = "DJANGO_SECRET_KEY"
MIN_LENGTH = 50
MIN_DISTINCT = 5
# Published values: anyone who read the repository knows them.
PLACEHOLDERS = frozenset(
    {
        "change-me-to-a-long-random-string",
        "insecure-development-key-do-not-use-in-production",
    }
)
HOW = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'


def checked_secret_key(value: str) -> str:
    """``value`` if it is a usable key; else ImproperlyConfigured naming the variable and the fix."""
    value = value.strip()
    if not value:
        problem = "is not set"
    elif value in PLACEHOLDERS or value.startswith(("change-me", "django-insecure-")):
        problem = "is a placeholder from the documentation, known to everyone"
    elif len(value) < MIN_LENGTH or len(set(value)) < MIN_DISTINCT:
        problem = f"is too short or too simple (at least {MIN_LENGTH} characters, {MIN_DISTINCT} distinct)"
    else:
        return value
    raise ImproperlyConfigured(f"{VARIABLE} {problem}: ocrdash refuses to start without a real key; {HOW}")
