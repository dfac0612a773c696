"""Spreadsheet formula injection (CSV injection) in the files churnml writes for people.

A CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` is run as a formula when the file is
opened in Excel, LibreOffice or Google Sheets (``=HYPERLINK(...)``, ``-2+3+cmd|' /C calc'!A0``);
a leading tab or carriage return can hide such a cell's start. The rejects file quotes input
cells verbatim, so a crafted book could plant a formula in it.

Rule (OWASP "CSV Injection"): a text cell whose first character is one of ``= + - @``, tab
(``\\t``) or carriage return (``\\r``) is written with a single quote ``'`` in front, which makes
every spreadsheet show it as text, quote included (``=1+2`` -> ``'=1+2``). One exception
keeps numbers readable: a cell that is entirely a plain decimal number -- optional sign,
digits, optional fraction, optional exponent, nothing else (``-5``, ``+3.2``, ``-1e-3``) -- is
left as it is; a spreadsheet reads it as that number, never as a formula. Anything else
starting with a sign (``-5+A1``, ``-cmd``) is prefixed. The quote is part of the written text:
strip a leading ``'`` before a value that starts with one of those characters to get the
original back.
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise_cell(value):
    """``value`` safe to open in a spreadsheet (see the module docstring); non-text unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`neutralise_cell` applied to every text column."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise_cell, na_action="ignore")
    return out
