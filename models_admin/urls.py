"""URLs of the dashboard's pages (names prefixed ``ocrdash-``)."""

urlpatterns: list = []
