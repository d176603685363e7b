import { defineConfig } from 'drizzle-kit';

// `npx drizzle-kit generate --name <what_changed>` writes the next migration into ./migrations.
// drizzle-orm's migrate() and homelab.migrations read the same folder and tracking table.
export default defineConfig({
  dialect: 'postgresql',
  schema: './shared/schema.ts',
  out: './migrations',
  dbCredentials: {
    url: process.env.DATABASE_URL ?? '',
  },
  migrations: {
    table: '__drizzle_migrations',
    schema: 'drizzle',
  },
});
