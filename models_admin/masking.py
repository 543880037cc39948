"""Secrets out of URLs shown on pages, in logs and in notification rows.

Beside the models (a webhook's ``masked_url``) and below the notification channels, which
re-export ``mask_url``: the base layer must not import the layers above it.
"""

from __future__ import annotations

import apprise


def mask_url(url: str) -> str:
    """The URL with its secrets hidden, for pages, logs and the notification rows.

    apprise's privacy mode hides the secrets it knows of (passwords, Slack tokens); a generic
    webhook often carries its token in the path, so every path segment is cut to its first
    and last character too, and the query string is dropped.
    """
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme[:20]}://…"
    shown = plugin.url(privacy=True).split("?", 1)[0]
    scheme, _, rest = shown.partition("://")
    where, _, path = rest.partition("/")
    segments = [_mask_segment(s) for s in path.split("/") if s]
    return f"{scheme}://{where}/" + "/".join(segments)


def _mask_segment(segment: str) -> str:
    if "..." in segment or len(segment) <= 3:
        return segment
    return f"{segment[0]}…{segment[-1]}"
