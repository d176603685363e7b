// The drizzle-orm peer: drizzle-orm's own migrator and journal reader, driven from the tests and
// benchmarks of homelab.migrations so they can compare the collection with the real thing.
//
//   DATABASE_URL=postgresql://... node peer.js migrate --folder F [--table T] [--schema S]
//   DATABASE_URL=postgresql://... node peer.js status  --folder F [--table T] [--schema S]
//
// The database URL is read from the environment only (never argv: it may hold a password).
// Output is one JSON document on stdout; on failure {"ok": false, "error": ...} and exit code 1.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { Pool } = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { migrate } = require('drizzle-orm/node-postgres/migrator');
const { readMigrationFiles } = require('drizzle-orm/migrator');

const USAGE = 'usage: DATABASE_URL=... node peer.js (migrate|status) --folder DIR [--table NAME] [--schema NAME]';

class UsageError extends Error {}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  if (command !== 'migrate' && command !== 'status') {
    throw new UsageError(`unknown or missing command ${JSON.stringify(command || '')}; ${USAGE}`);
  }
  const opts = { command, folder: null, table: '__drizzle_migrations', schema: 'drizzle' };
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i];
    const value = rest[i + 1];
    if (value === undefined) throw new UsageError(`${key} needs a value; ${USAGE}`);
    if (key === '--folder') opts.folder = value;
    else if (key === '--table') opts.table = value;
    else if (key === '--schema') opts.schema = value;
    else throw new UsageError(`unknown option ${key}; ${USAGE}`);
  }
  if (!opts.folder) throw new UsageError(`--folder is required; ${USAGE}`);
  opts.folder = path.resolve(opts.folder);
  return opts;
}

function databaseUrl() {
  const url = process.env.DATABASE_URL;
  if (!url) throw new UsageError('DATABASE_URL is not set; export the libpq URL of the database in DATABASE_URL');
  // accept SQLAlchemy-style schemes as the collection does: postgresql+psycopg2:// -> postgresql://
  return url.replace(/^postgres(?:ql)?\+[a-z0-9_]+:\/\//i, 'postgresql://');
}

function ident(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

function scrub(message) {
  let text = String(message);
  const url = process.env.DATABASE_URL || '';
  const m = /^[^:]+:\/\/[^:@/]*:([^@/]*)@/.exec(url);
  if (m && m[1]) {
    text = text.split(m[1]).join('********');
    try {
      const plain = decodeURIComponent(m[1]);
      if (plain) text = text.split(plain).join('********');
    } catch (e) {
      // not percent-encoded: nothing more to hide
    }
  }
  return text;
}

async function trackingRows(client, schema, table) {
  const exists = await client.query(
    'SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2', [schema, table]);
  if (exists.rowCount === 0) return null;
  const res = await client.query(`SELECT id, hash, created_at FROM ${ident(schema)}.${ident(table)} ORDER BY id`);
  return res.rows.map((r) => ({ id: r.id, hash: r.hash, created_at: r.created_at === null ? null : Number(r.created_at) }));
}

function journalEntries(folder) {
  // drizzle-orm's own reader: hashes, statements and folderMillis exactly as migrate() sees them
  const migrations = readMigrationFiles({ migrationsFolder: folder });
  const journal = JSON.parse(fs.readFileSync(path.join(folder, 'meta', '_journal.json'), 'utf8'));
  return migrations.map((m, i) => ({
    tag: journal.entries[i].tag,
    when: m.folderMillis,
    hash: m.hash,
    statements: m.sql.length,
  }));
}

async function runMigrate(pool, opts) {
  const db = drizzle(pool);
  await migrate(db, { migrationsFolder: opts.folder, migrationsTable: opts.table, migrationsSchema: opts.schema });
  const client = await pool.connect();
  try {
    return { ok: true, rows: (await trackingRows(client, opts.schema, opts.table)) || [] };
  } finally {
    client.release();
  }
}

async function runStatus(pool, opts) {
  const entries = journalEntries(opts.folder);
  const client = await pool.connect();
  let rows;
  try {
    rows = await trackingRows(client, opts.schema, opts.table);
  } finally {
    client.release();
  }
  // migrate() compares each entry with the first row of `ORDER BY created_at DESC LIMIT 1` only;
  // PostgreSQL sorts NULLs first there, and Number(null) is 0, so a NULL row makes everything pending
  let last = null;
  for (const r of rows || []) {
    if (r.created_at === null) {
      last = 0;
      break;
    }
    if (last === null || r.created_at > last) last = r.created_at;
  }
  const pending = entries.filter((e) => last === null || last < e.when);
  return {
    ok: true,
    table_exists: rows !== null,
    rows: rows || [],
    last_created_at: last,
    entries,
    applied: entries.filter((e) => !pending.includes(e)).map((e) => e.tag),
    pending: pending.map((e) => e.tag),
  };
}

async function main() {
  let pool = null;
  try {
    const opts = parseArgs(process.argv.slice(2));
    pool = new Pool({ connectionString: databaseUrl(), max: 2, connectionTimeoutMillis: 15000 });
    const result = opts.command === 'migrate' ? await runMigrate(pool, opts) : await runStatus(pool, opts);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (err) {
    const out = { ok: false, error: scrub(err && err.message ? err.message : err) };
    if (err && err.code) out.code = err.code;
    if (err && err.cause && err.cause.message) out.cause = scrub(err.cause.message);
    if (err && err.cause && err.cause.code) out.code = err.cause.code;
    if (err instanceof UsageError) out.usage = true;
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return 1;
  } finally {
    if (pool) await pool.end().catch(() => {});
  }
}

main().then((code) => { process.exitCode = code; });
