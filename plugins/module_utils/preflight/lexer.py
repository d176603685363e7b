# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small PostgreSQL lexer, so nothing inside a literal or a comment is mistaken for a statement.

    tokens = lex(sql)            # [Token(kind, text, value, start)], whitespace and comments dropped
    statements = split_sql(sql)  # [Statement(text, tokens, start)], split on top-level semicolons

It follows PostgreSQL's own scanner (src/backend/parser/scan.l): -- and nested /* */ comments; '...' string
constants with '' doubling, E'...' with backslash escapes (\\n, octal, \\xhh, \\uXXXX), B'', X'', N'', U&'...'
with its UESCAPE clause, and constants joined across a newline ('a'<newline>'b' is 'ab'); "quoted" and
U&"quoted" identifiers; $tag$ dollar quoting and $1 parameters. An unterminated literal or comment runs to the
end of the text (the server fails on it; nothing inside it is a statement).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# [A-Za-z_\u0080-\uffff], [A-Za-z0-9_$\u0080-\uffff] and [A-Za-z0-9_\u0080-\uffff] written as what they leave out:
# the same characters, but a class spanning \u0080-\uffff takes re several milliseconds to compile on every import
_START = r'[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f\U00010000-\U0010ffff]'
_REST = r'[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\U00010000-\U0010ffff]'
_WORD_START = re.compile(_START)
_WORD = re.compile(r'[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\U00010000-\U0010ffff]*')
_DOLLAR_TAG = re.compile(r'\$(%s%s*)?\$' % (_START, _REST))
_PARAM = re.compile(r'\$\d+')
_NUMBER = re.compile(r'[0-9][0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9]+)?')


class Token(object):
    """One token: ``kind`` (word, ident, string, number, param, punct, semicolon), ``text`` as written,
    ``value`` (a word upper-cased, an identifier unquoted, a string constant's value) and ``start`` (offset)."""

    __slots__ = ('kind', 'text', 'value', 'start')

    def __init__(self, kind, text, value, start):
        self.kind = kind    # word | ident | string | number | param | punct | semicolon
        self.text = text    # as written
        self.value = value  # word: upper-case; ident: unquoted name; string: the literal's value
        self.start = start

    def __repr__(self):
        return 'Token(%s, %r)' % (self.kind, self.text)


def _string_end(sql, i, backslash):
    """Index after the closing quote of a '...' literal whose opening quote is at ``i``; None if unterminated."""
    n = len(sql)
    j = i + 1
    while j < n:
        ch = sql[j]
        if backslash and ch == '\\':
            j += 2
            continue
        if ch == "'":
            if j + 1 < n and sql[j + 1] == "'":
                j += 2
                continue
            return j + 1
        j += 1
    return None


_OCTAL = re.compile(r'[0-7]{1,3}')
_HEX = re.compile(r'[0-9A-Fa-f]{1,2}')
# what may stand between two string constants PostgreSQL joins into one: whitespace with a newline, -- comments
# (scan.l's quotecontinue: horiz_whitespace* newline special_whitespace* quote)
_CONTINUATION = re.compile(r"(?:[ \t\f]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")
_UESCAPE = re.compile(r"\s*UESCAPE\s*'([^'])'", re.I)


def _unescape(body, backslash):
    """The value of a '...' literal's body; with ``backslash`` (E'...') PostgreSQL's escapes: \\b \\f \\n \\r
    \\t, octal \\ooo and hex \\xhh bytes, \\uXXXX and \\UXXXXXXXX, any other \\c is c."""
    body = body.replace("''", "'")
    if not backslash or '\\' not in body:
        return body
    out = bytearray()
    i = 0
    n = len(body)
    simple = {'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
    while i < n:
        ch = body[i]
        if ch != '\\' or i + 1 >= n:
            out += ch.encode('utf-8', 'surrogatepass')
            i += 1
            continue
        nxt = body[i + 1]
        m = _OCTAL.match(body, i + 1)
        if m:
            out.append(int(m.group(0), 8) & 0xFF)
            i = m.end()
            continue
        if nxt == 'x':
            m = _HEX.match(body, i + 2)
            if m:
                out.append(int(m.group(0), 16))
                i = m.end()
                continue
        if nxt in 'uU':
            width = 4 if nxt == 'u' else 8
            digits = body[i + 2:i + 2 + width]
            if len(digits) == width and all(c in '0123456789abcdefABCDEF' for c in digits):
                try:
                    out += chr(int(digits, 16)).encode('utf-8', 'surrogatepass')
                except ValueError:
                    pass
                i += 2 + width
                continue
        out += simple.get(nxt, nxt).encode('utf-8', 'surrogatepass')
        i += 2
    return out.decode('utf-8', 'replace')


def _unicode_unescape(body, escape='\\'):
    """The value of a U&'...' literal's body (already joined, '' undoubled) with escape character ``escape``."""
    out = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != escape:
            out.append(ch)
            i += 1
            continue
        if body.startswith(escape, i + 1):
            out.append(escape)
            i += 2
            continue
        plus = body.startswith('+', i + 1)
        width = 6 if plus else 4
        start = i + 2 if plus else i + 1
        digits = body[start:start + width]
        if len(digits) == width and all(c in '0123456789abcdefABCDEF' for c in digits):
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                pass
            i = start + width
            continue
        out.append(ch)
        i += 1
    return ''.join(out)


def skip_block_comment(text, i):
    """Skip the ``/* ... */`` comment starting at ``text[i]``; PostgreSQL nests them (scan.l ``xc``).

    Returns ``(end, closed)``: the index after the comment (``len(text)`` when unterminated) and whether
    its last ``*/`` was found.
    """
    n = len(text)
    depth = 1
    i += 2
    while i < n and depth:
        if text.startswith('/*', i):
            depth += 1
            i += 2
        elif text.startswith('*/', i):
            depth -= 1
            i += 2
        else:
            i += 1
    return i, not depth


def _string_token(sql, i):
    """(Token, end) of the string constant at ``sql[i]`` (its E/B/X/N/U& prefix included); constants joined
    across a newline are one token, U&'...' takes its UESCAPE clause."""
    ch = sql[i]
    backslash = ch in 'Ee'
    quote = sql.index("'", i)
    parts = []
    while True:
        end = _string_end(sql, quote, backslash)
        if end is None:
            parts.append(sql[quote + 1:])
            end = len(sql)
            break
        parts.append(sql[quote + 1:end - 1])
        more = _CONTINUATION.match(sql, end)  # 'a'<newline>'b' is one constant 'ab'
        if not more:
            break
        quote = more.end() - 1
    if ch in 'Uu':
        escape = _UESCAPE.match(sql, end)
        value = _unicode_unescape(''.join(p.replace("''", "'") for p in parts),
                                  escape.group(1) if escape else '\\')
        end = escape.end() if escape else end
    else:
        value = ''.join(_unescape(p, backslash) for p in parts)
    return Token('string', sql[i:end], value, i), end


def _ident_token(sql, i):
    """(Token, end) of the quoted identifier ("..." or U&"...") at ``sql[i]``."""
    quote = sql.index('"', i)
    j = quote + 1
    while True:
        k = sql.find('"', j)
        if k < 0:
            k = len(sql)
            break
        if sql.startswith('""', k):
            j = k + 2
            continue
        break
    return Token('ident', sql[i:k + 1], sql[quote + 1:k].replace('""', '"'), i), k + 1


def _dollar_token(sql, i):
    """(Token, end) of the dollar-quoted string or $n parameter at ``sql[i]``, or None (a lone '$')."""
    m = _DOLLAR_TAG.match(sql, i)
    if m:
        tag = m.group(0)
        end = sql.find(tag, m.end())
        stop = len(sql) if end < 0 else end + len(tag)
        return Token('string', sql[i:stop], sql[m.end():end if end >= 0 else len(sql)], i), stop
    m = _PARAM.match(sql, i)
    if m:
        return Token('param', m.group(0), m.group(0), i), m.end()
    return None


def _quoted_token(sql, i):
    """(Token, end) of a string constant, quoted identifier or dollar-quoted string at ``sql[i]``, or None."""
    ch = sql[i]
    if ch == "'" or (ch in 'EeBbXxNn' and sql.startswith("'", i + 1)) or \
            (ch in 'Uu' and sql.startswith("&'", i + 1)):
        return _string_token(sql, i)
    if ch == '"' or (ch in 'Uu' and sql.startswith('&"', i + 1)):
        return _ident_token(sql, i)
    if ch == '$':
        return _dollar_token(sql, i)
    return None


def _plain_token(sql, i):
    """(Token, end) of the word, number, semicolon or punctuation character at ``sql[i]``."""
    ch = sql[i]
    if _WORD_START.match(ch):
        m = _WORD.match(sql, i + 1)
        text = sql[i:m.end()]
        return Token('word', text, text.upper(), i), m.end()
    if ch.isdigit():
        m = _NUMBER.match(sql, i)
        return Token('number', m.group(0), m.group(0), i), m.end()
    return Token('semicolon' if ch == ';' else 'punct', ch, ch, i), i + 1


def lex(sql, block_comments=None):
    """PostgreSQL tokens of ``sql`` (a list of :class:`Token`) without whitespace and comments. An
    unterminated literal or comment runs to the end (the server fails on it; nothing inside it is a
    statement). ``block_comments``, a list, receives the (start, end) of each /* */ comment."""
    tokens = []
    i = 0
    n = len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
            continue
        if sql.startswith('--', i):
            nl = sql.find('\n', i)
            i = n if nl < 0 else nl + 1
            continue
        if sql.startswith('/*', i):
            opened = i
            i = skip_block_comment(sql, i)[0]
            if block_comments is not None:
                block_comments.append((opened, i))
            continue
        token, i = _quoted_token(sql, i) or _plain_token(sql, i)
        tokens.append(token)
    return tokens


class Statement(object):
    """One SQL statement: its ``text``, its ``tokens``, its ``start`` offset in the text it came from, and
    ``conditional`` when it is in code that may not run (alembic: a branch, loop or nested function)."""

    def __init__(self, text, tokens, start=0, conditional=False):
        self.text = text
        self.tokens = tokens
        self.start = start
        self.conditional = conditional  # in code that may not run (alembic: a branch, loop or nested function)

    @property
    def words(self):
        return [t.value if t.kind == 'word' else None for t in self.tokens]


def split_sql(sql):
    """The statements of ``sql`` (split on top-level semicolons; empty ones dropped), each with its tokens."""
    out = []
    current = []
    start = None
    for tok in lex(sql):
        if tok.kind == 'semicolon':
            if current:
                out.append(Statement(sql[start:tok.start], current, start))
            current, start = [], None
            continue
        if start is None:
            start = tok.start
        current.append(tok)
    if current:
        out.append(Statement(sql[start:], current, start))
    return out


def cut_inside(sql, marker):
    """The offsets of ``marker`` in ``sql`` that fall inside a string literal, quoted identifier, dollar-quoted
    body or /* */ comment (a tool that splits the text on ``marker`` cuts that statement in two)."""
    spans = []
    tokens = lex(sql, spans)
    spans.extend((t.start, t.start + len(t.text)) for t in tokens if t.kind in ('string', 'ident'))
    out = []
    pos = sql.find(marker)
    while pos >= 0:
        if any(start < pos < end for start, end in spans):
            out.append(pos)
        pos = sql.find(marker, pos + 1)
    return out
