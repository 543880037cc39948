"""The JSON API for scripts: the same permissions as the pages (security/roles.py)."""
