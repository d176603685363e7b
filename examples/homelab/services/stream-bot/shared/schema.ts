// Stream bot database schema (drizzle-orm, PostgreSQL).
// Migrations in ../migrations are generated from this file with `drizzle-kit generate`;
// every migration also has a hand-written <tag>.down.sql that reverses it.
import { sql } from 'drizzle-orm';
import { boolean, index, integer, pgTable, serial, text, timestamp, unique, varchar } from 'drizzle-orm/pg-core';

// Streamers who use the bot.
export const users = pgTable('users', {
  id: varchar('id').primaryKey().default(sql`gen_random_uuid()`),
  email: varchar('email', { length: 255 }).notNull().unique(),
  displayName: varchar('display_name', { length: 100 }),
  createdAt: timestamp('created_at').defaultNow().notNull(),
});

// A user's linked streaming accounts (twitch, youtube, kick).
// 0003: one platform account can be linked to one user only (stops account hijacking).
export const platformConnections = pgTable('platform_connections', {
  id: varchar('id').primaryKey().default(sql`gen_random_uuid()`),
  userId: varchar('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  platform: varchar('platform', { length: 20 }).notNull(),
  platformUserId: varchar('platform_user_id', { length: 100 }).notNull(),
  platformUsername: varchar('platform_username', { length: 100 }),
  accessToken: text('access_token'),
  connectedAt: timestamp('connected_at').defaultNow().notNull(),
}, (t) => [
  unique('platform_connections_platform_user_unique').on(t.platform, t.platformUserId),
]);

export const botSettings = pgTable('bot_settings', {
  id: serial('id').primaryKey(),
  userId: varchar('user_id').notNull().unique().references(() => users.id, { onDelete: 'cascade' }),
  commandPrefix: varchar('command_prefix', { length: 5 }).default('!').notNull(),
  isActive: boolean('is_active').default(true).notNull(),
});

export const giveaways = pgTable('giveaways', {
  id: serial('id').primaryKey(),
  userId: varchar('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  title: varchar('title', { length: 200 }).notNull(),
  keyword: varchar('keyword', { length: 50 }).notNull(),
  isActive: boolean('is_active').default(true).notNull(),
  maxWinners: integer('max_winners').default(1).notNull(),
  createdAt: timestamp('created_at').defaultNow().notNull(),
  endedAt: timestamp('ended_at'),
  // 0004: entries counted under the row lock instead of count(*) races
  entryCount: integer('entry_count').default(0).notNull(),
});

export const giveawayEntries = pgTable('giveaway_entries', {
  id: serial('id').primaryKey(),
  giveawayId: integer('giveaway_id').notNull().references(() => giveaways.id, { onDelete: 'cascade' }),
  platformUsername: varchar('platform_username', { length: 100 }).notNull(),
  platform: varchar('platform', { length: 20 }).notNull(),
  enteredAt: timestamp('entered_at').defaultNow().notNull(),
}, (t) => [
  // 0004: one entry per viewer per giveaway, enforced by the database
  unique('giveaway_entries_giveaway_user_unique').on(t.giveawayId, t.platform, t.platformUsername),
]);

// 0004: every attempt to enter (accepted or rejected), for rate limiting and audits.
export const giveawayEntryAttempts = pgTable('giveaway_entry_attempts', {
  id: serial('id').primaryKey(),
  giveawayId: integer('giveaway_id').notNull().references(() => giveaways.id, { onDelete: 'cascade' }),
  platformUsername: varchar('platform_username', { length: 100 }).notNull(),
  platform: varchar('platform', { length: 20 }).notNull(),
  accepted: boolean('accepted').notNull(),
  attemptedAt: timestamp('attempted_at').defaultNow().notNull(),
}, (t) => [
  index('giveaway_entry_attempts_giveaway_time_idx').on(t.giveawayId, t.attemptedAt),
]);

// 0002: channel currency (points) per viewer.
export const userBalances = pgTable('user_balances', {
  id: serial('id').primaryKey(),
  userId: varchar('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  platform: varchar('platform', { length: 20 }).notNull(),
  platformUsername: varchar('platform_username', { length: 100 }).notNull(),
  balance: integer('balance').default(0).notNull(),
  updatedAt: timestamp('updated_at').defaultNow().notNull(),
}, (t) => [
  index('user_balances_user_idx').on(t.userId),
]);
