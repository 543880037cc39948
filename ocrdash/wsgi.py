"""WSGI entry point (gunicorn ocrdash.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrdash.settings")
application = get_wsgi_application()
