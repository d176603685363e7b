"""adapters/drizzle/journal.py: statement splitting (as drizzle-orm sends them), blank chunks, the hash of a file
(compared with Node's own decoder on invalid UTF-8, which skips without node), the journal write helper."""

import shutil
import subprocess

import pytest

from harness.drizzle_gen import write_journal

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import journal


# ----------------------------------------------------------------------------------- statements
@pytest.mark.parametrize('chunk,blank', [
    ('', True),
    ('  \n\t\r\n', True),
    ('-- only a comment', True),
    ('-- one\n-- two\n', True),
    ('/* block */', True),
    ('/* outer /* nested */ still comment */\n', True),
    (';', True),
    (' ;\n-- x\n;', True),
    ('/* unterminated', False),
    ('SELECT 1', False),
    ('-- note\nSELECT 1', False),
    ('/* c */ CREATE TABLE t (id int)', False),
    ("'-- not a comment'", False),
])
def test_blank_chunks(chunk, blank):
    assert journal.is_blank_chunk(chunk) is blank


def test_split_keeps_chunks_as_drizzle_sends_them():
    text = ('CREATE TABLE a (id int);\n--> statement-breakpoint\n'
            '--> statement-breakpoint\n-- just a comment\n--> statement-breakpoint\n'
            'INSERT INTO a VALUES (1);--> statement-breakpoint\n')
    assert journal.split_statements(text) == ['CREATE TABLE a (id int);\n', '\nINSERT INTO a VALUES (1);']


def test_split_is_literal_even_inside_strings():
    # drizzle-orm splits on the literal text, wherever it is; so do we
    text = "SELECT '--> statement-breakpoint'"
    assert journal.split_statements(text) == ["SELECT '", "'"]


# ----------------------------------------------------------------------------------------- hash
BAD_BYTES = (b'CREATE TABLE x (v text);\n-- \xe9 latin-1, \xed\xa0\x80 surrogate, \xf0\x9f\x9a cut, \xc0\xaf '
             b'overlong, \xf4\x90\x80\x80 too big, \xff\xfe, \xef\xbb\xbf bom, \xf0\x9f\x9a\x80 ok\n')


def test_hash_of_valid_utf8_is_plain_sha256():
    import hashlib
    raw = 'SELECT \'h\u00e9llo \U0001F680\';\r\n'.encode('utf-8')
    assert journal.sql_hash(raw) == hashlib.sha256(raw).hexdigest()


def test_hash_matches_nodes_decoder_on_invalid_utf8(tmp_path):
    node = shutil.which('node')
    if not node:
        pytest.skip('node is not installed: cannot compare with Node\'s Buffer.toString()')
    path = tmp_path / 'bad.sql'
    path.write_bytes(BAD_BYTES)
    script = ("const fs=require('fs');const c=require('crypto');"
              "process.stdout.write(c.createHash('sha256').update(fs.readFileSync(process.argv[1]).toString())"
              ".digest('hex'))")
    out = subprocess.run([node, '-e', script, str(path)], capture_output=True, text=True, timeout=60, check=True)
    assert journal.sql_hash(BAD_BYTES) == out.stdout.strip()


def test_utf8_error_points_at_the_byte():
    assert journal.utf8_error(b'ok\nok') is None
    msg = journal.utf8_error(b'line1\nab\xe9')
    assert '0xe9' in msg and 'offset 8' in msg and 'line 2' in msg


def _entry(tag, when):
    return {'idx': 0, 'version': '7', 'when': when, 'tag': tag, 'breakpoints': True}


def test_journal_write_helper_roundtrip(tmp_path):
    folder = str(tmp_path / 'm')
    write_journal(folder, [_entry('0000_a', 5)])
    entries, errors = journal.load_journal(folder)
    assert errors == [] and [(e.tag, e.when, e.exists) for e in entries] == [('0000_a', 5, False)]
