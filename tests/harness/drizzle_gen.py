"""Generate drizzle-kit style migration folders for tests and benchmarks.

    from harness.drizzle_gen import generate
    tags = generate('/tmp/x/migrations', 120)               # 120 migrations + down files + journal
    tags = generate(folder, 10, weird=True)                 # blank/comment chunks, %, unicode, CRLF...
    generate(folder, 5, broken={2: 1})                      # 3rd migration fails at its 2nd statement
    truncate_journal(folder, 60)                            # keep only the first 60 journal entries

Each migration N creates table ``gen_NNNN`` (serial id, name, parent_id, payload, created_at), an index,
a foreign key to the previous table, one column on the previous table, and inserts rows with fixed
values (so two databases migrated alike hold identical data). Its down file undoes exactly that.
The journal looks like drizzle-kit's: version "7"/dialect "postgresql" (or the old "5"/"pg").
"""

import datetime
import json
import os
import shutil

BP = '--> statement-breakpoint'
BASE_WHEN = 1700000000000
_WORDS = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'nice', 'proud',
          'silly', 'witty', 'zany', 'bold', 'quick']
_NAMES = ['wolverine', 'storm', 'hulk', 'thor', 'loki', 'vision', 'gambit', 'rogue', 'cyclops', 'beast', 'nova',
          'blade', 'magneto', 'phoenix', 'falcon', 'groot']


def table(i):
    return 'gen_%04d' % i


def make_tag(i, style='kit', when=None):
    if style == 'timestamp':
        stamp = datetime.datetime.fromtimestamp((when or BASE_WHEN + i * 1000) / 1000.0, datetime.timezone.utc)
        return '%s_%s' % (stamp.strftime('%Y%m%d%H%M%S'), 'step_%d' % i)
    return '%04d_%s_%s' % (i, _WORDS[i % len(_WORDS)], _NAMES[(i * 7 + 3) % len(_NAMES)])


def up_sql(i, weird=False, broken_at=None, chain=True):
    """Statements (chunks) of migration i; broken_at puts a failing statement at that 0-based position.

    With chain=False the migration does not touch the previous migration's table (an independent branch).
    """
    t = table(i)
    chunks = [
        'CREATE TABLE "%s" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"name" varchar(100) NOT NULL,\n'
        '\t"parent_id" integer,\n\t"payload" text,\n\t"created_at" timestamp DEFAULT now() NOT NULL\n);\n' % t,
        'CREATE INDEX "%s_name_idx" ON "%s" USING btree ("name");' % (t, t),
    ]
    if i > 0 and chain:
        prev = table(i - 1)
        chunks.append('ALTER TABLE "%s" ADD CONSTRAINT "%s_parent_fk" FOREIGN KEY ("parent_id") REFERENCES '
                      '"public"."%s"("id") ON DELETE cascade ON UPDATE no action;' % (t, t, prev))
        chunks.append('ALTER TABLE "%s" ADD COLUMN "child_%04d_count" integer DEFAULT 0 NOT NULL;' % (prev, i))
    chunks.append("INSERT INTO \"%s\" (\"name\", \"payload\", \"created_at\") VALUES ('row %d-a', 'p', "
                  "'2024-01-01 00:00:00'), ('row %d-b', NULL, '2024-01-02 00:00:00');" % (t, i, i))
    if weird:
        kind = i % 6
        if kind == 0:
            chunks.insert(1, '-- a note between statements\n/* and a /* nested */ block comment */\n')
        elif kind == 1:
            chunks.insert(1, '\n\n')  # an empty chunk: two breakpoints in a row
            chunks.append('\n')  # trailing breakpoint
        elif kind == 2:
            chunks.append("INSERT INTO \"%s\" (\"name\", \"payload\", \"created_at\") VALUES ('100%% sure %%s "
                          "%%(x)s', 'h\u00e9llo \u2713 \U0001F680', '2024-01-03 00:00:00');" % t)
        elif kind == 3:
            chunks.append('CREATE FUNCTION "%s_fn"() RETURNS integer LANGUAGE sql AS $$ SELECT 1; $$;\n'
                          'COMMENT ON TABLE "%s" IS \'two statements; one chunk\';' % (t, t))
        elif kind == 4:
            chunks.append('CREATE TABLE "%s weird ""name"""  ("x" int);' % t)
        elif kind == 5:
            chunks.append(';\n')
    if broken_at is not None:
        chunks.insert(broken_at, 'INSERT INTO "no_such_table_%04d" VALUES (1);' % i)
    return chunks


def down_sql(i, weird=False, chain=True):
    t = table(i)
    chunks = []
    if weird and i % 6 == 3:
        chunks.append('DROP FUNCTION "%s_fn"();' % t)
    if weird and i % 6 == 4:
        chunks.append('DROP TABLE "%s weird ""name""";' % t)
    if i > 0 and chain:
        chunks.append('ALTER TABLE "%s" DROP COLUMN "child_%04d_count";' % (table(i - 1), i))
    chunks.append('DROP TABLE "%s" CASCADE;' % t)
    return chunks


def join_chunks(chunks):
    """drizzle-kit joins statements as `<stmt>--> statement-breakpoint\n<stmt>`."""
    return (BP + '\n').join(chunks)


def journal_entry(idx, tag, when, version='7'):
    return {'idx': idx, 'version': version, 'when': when, 'tag': tag, 'breakpoints': True}


def write_journal(folder, entries, version='7', dialect=None):
    os.makedirs(os.path.join(folder, 'meta'), exist_ok=True)
    data = {'version': version, 'dialect': dialect or ('pg' if version == '5' else 'postgresql'),
            'entries': entries}
    with open(os.path.join(folder, 'meta', '_journal.json'), 'w') as fh:
        json.dump(data, fh, indent=2)
    return data


USERS_SQL = 'CREATE TABLE "users" ("id" serial PRIMARY KEY, "email" text NOT NULL);'


def users_then(root, tag, sql):
    """A drizzle folder under ``root``/migrations: 0000_users (a users table), then ``tag`` running ``sql``."""
    folder = os.path.join(root, 'migrations')
    entries = []
    for idx, (name, text) in enumerate([('0000_users', USERS_SQL), (tag, sql)]):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name + '.sql'), 'w') as fh:
            fh.write(text + '\n')
        entries.append(journal_entry(idx, name, 1700000000000 + idx * 1000))
    write_journal(folder, entries)
    return folder


def read_journal(folder):
    with open(os.path.join(folder, 'meta', '_journal.json')) as fh:
        return json.load(fh)


def generate(folder, count, start=0, base_when=BASE_WHEN, step=1000, down=True, weird=False, broken=None,
             style='kit', version='7', crlf=(), whens=None, chain=True):
    """Write ``count`` migrations (numbers start..start+count-1) and a journal; returns the tags.

    With start > 0 the entries are appended to the folder's existing journal. ``broken`` maps a migration
    number to the 0-based statement position where a failing statement is inserted. ``crlf`` lists
    migration numbers written with CRLF line endings. ``whens`` overrides the `when` of migration numbers.
    With chain=False the migrations are independent of each other (no foreign key/column on the previous).
    """
    os.makedirs(os.path.join(folder, 'meta'), exist_ok=True)
    entries = read_journal(folder)['entries'] if start else []
    tags = []
    for i in range(start, start + count):
        when = (whens or {}).get(i, base_when + i * step)
        tag = make_tag(i, style, when)
        text = join_chunks(up_sql(i, weird=weird, broken_at=(broken or {}).get(i), chain=chain))
        if i in crlf:
            text = text.replace('\n', '\r\n')
        with open(os.path.join(folder, tag + '.sql'), 'w', encoding='utf-8', newline='') as fh:
            fh.write(text)
        if down:
            with open(os.path.join(folder, tag + '.down.sql'), 'w', encoding='utf-8', newline='') as fh:
                fh.write(join_chunks(down_sql(i, weird=weird, chain=chain)))
        entries.append(journal_entry(len(entries), tag, when, version))
        tags.append(tag)
    write_journal(folder, entries, version=version)
    return tags


def truncate_journal(folder, keep):
    """Keep the first ``keep`` journal entries (the files stay)."""
    data = read_journal(folder)
    data['entries'] = data['entries'][:keep]
    with open(os.path.join(folder, 'meta', '_journal.json'), 'w') as fh:
        json.dump(data, fh, indent=2)


def set_journal(folder, entries, version='7'):
    return write_journal(folder, entries, version=version)


def copy_folder(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------- test helpers
def drizzle_spec(root, name='svc', url='postgresql://localhost/x', **extra):
    """A service spec for a drizzle service rooted at ``root`` (folder ``root/migrations``)."""
    spec = dict(name=name, tool='drizzle', path=str(root), database_url=url, migrations_dir='migrations',
                migrations_table='__drizzle_migrations', migrations_schema='drizzle')
    spec.update(extra)
    return spec


def drizzle_adapter(root, url, name='svc', **extra):
    """The collection's DrizzleAdapter for a folder (imported lazily: benchmarks set sys.path first)."""
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.adapter import DrizzleAdapter
    return DrizzleAdapter(drizzle_spec(root, name, url, **extra), DbUrl(url))


def tracking_rows(db, schema='drizzle', table='__drizzle_migrations'):
    """[(id, hash, created_at)] of a tracking table by id, or None when it does not exist."""
    exists = db.query('SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s', (schema, table))
    if not exists:
        return None
    return [tuple(r) for r in db.query('SELECT id, hash, created_at FROM "%s"."%s" ORDER BY id'
                                       % (schema.replace('"', '""'), table.replace('"', '""')))]
