"""The canonical form: the exact bytes a signature covers, built alike on both sides.

Signer and verifier build these bytes independently, each from its own dict (the verifier's
came through Celery's JSON), so they must depend on nothing but the values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# Deeper than any message we send; a hostile message nested deeper is refused, not recursed.
_MAX_DEPTH = 32


def _is_utf8(text: str) -> bool:
    # A lone surrogate has no UTF-8 form: the canonical bytes could not be built.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    # json.dumps would quietly turn an int key into a string (so {1: a} and {"1": a} would
    # share a signature) and would reject a datetime only deep in the encoder; refuse both
    # here with the path to the bad value, so a producer bug is found at once.
    if depth > _MAX_DEPTH:
        raise TypeError(f"{where[:200]}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if not value.isascii() and not _is_utf8(value):
            raise TypeError(f"{where[:200]}: a string holds a lone surrogate (not valid Unicode)")
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where[:200]}: {value!r} has no JSON form")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}.{i}", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where[:200]}: key {key!r:.100} is not a string")
            if not key.isascii() and not _is_utf8(key):
                raise TypeError(f"{where[:200]}: a key holds a lone surrogate (not valid Unicode)")
            _check_json(item, f"{where}.{key[:100]}", depth + 1)
        return
    raise TypeError(
        f"{where[:200]}: {type(value).__name__} is not JSON; sign the dict that crosses the broker "
        "(model_dump(mode='json')), where datetimes are already ISO strings"
    )


def _plain(value: Any, depth: int = 0) -> bool:
    """True if ``value``'s containers are as JSON has them: string keys, not too deep.

    The quick look of every message (a 50-file report holds some 600 values): what JSON
    cannot carry at all (NaN, a lone surrogate, a datetime) the encoder itself refuses, so
    only what it would quietly change (a key that is not a string) and the depth are looked
    at here, without building a path per value as ``_check_json`` does to name a problem.
    """
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return False
            if isinstance(item, Mapping | list | tuple) and not _plain(item, depth + 1):
                return False
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping | list | tuple) and not _plain(item, depth + 1):
                return False
    return True


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """``value`` as compact JSON: keys sorted, no whitespace, UTF-8 (no ``\\uXXXX``), no NaN.

    Strings are taken as they are, never Unicode-normalised: two paths that differ only in
    normal form are two different files on disk and must not share a signature. Datetimes
    are expected as the ISO strings the JSON messages already carry; re-parsing and
    re-formatting them on one side only would change the bytes. Raises TypeError naming the
    path to a value that has no single JSON form.
    """
    if not _plain(value):
        _check_json(value, "message")  # names the key or the depth, and raises
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        _check_json(value, "message")  # the slow look names where
        raise
