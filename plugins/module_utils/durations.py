# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL durations, as the time settings lock_timeout and statement_timeout take them.

PostgreSQL reads a time setting as a number with an optional unit: us, ms, s, min, h, d (a bare number is
in the setting's base unit, milliseconds for both). This is the one parser of them; each caller says in its
own words what it refuses (the apply's options, drizzle's session settings, alembic's PGOPTIONS).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

UNITS = ('us', 'ms', 's', 'min', 'h', 'd')
_DURATION = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$')


def split(text):
    """(number as written, unit or None) of the duration ``text`` ('5s' -> ('5', 's'), ' 500 ' -> ('500', None)),
    or None when ``text`` is not one (negative, another unit, anything after it)."""
    match = _DURATION.match(text)
    return (match.group(1), match.group(2)) if match else None


def compact(value):
    """``value`` (a string, or a number: str() of it) as a duration setting without white space ('5 s' -> '5s',
    5 -> '5'), or None when it is not a duration."""
    text = str(value).strip()
    return text.replace(' ', '') if split(text) else None
