"""Bounded quotes of user input in error messages.

A parameter, a path or a model's options can be long (or, as YAML with aliases, expand to
millions of characters when printed); an error message that quotes all of it floods the log.
Every message on the model-loading path quotes user input through these two helpers.
"""
from __future__ import annotations

import reprlib
from typing import Any

QUOTE_LIMIT = 200
"""Characters of user input an error message quotes at most (plus a note of what was cut)."""

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = QUOTE_LIMIT
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 3, 8, 8, 8, 8


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when it was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) for an error message, about ``limit`` characters at most.

    Bounded work as well as bounded output: nested containers are cut at a few levels and
    items (reprlib), so a structure with shared parts is never expanded in full.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"
    return shorten(_repr.repr(value), limit)
