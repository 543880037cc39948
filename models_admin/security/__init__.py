"""Defences that belong to no one feature: login lockout audit, spreadsheet-safe CSV, bounded
query parameters."""
