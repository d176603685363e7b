// Discord bot database schema (drizzle-orm, PostgreSQL).
// Migrations in ../migrations are generated from this file with `drizzle-kit generate`;
// every migration also has a hand-written <tag>.down.sql that reverses it.
import { boolean, index, integer, pgTable, serial, text, timestamp, unique, varchar } from 'drizzle-orm/pg-core';

// Discord accounts the bot has seen (id is the Discord snowflake).
export const discordUsers = pgTable('discord_users', {
  id: varchar('id', { length: 32 }).primaryKey(),
  username: varchar('username', { length: 100 }).notNull(),
  createdAt: timestamp('created_at').defaultNow().notNull(),
});

// Guilds the bot is a member of.
export const servers = pgTable('servers', {
  id: varchar('id', { length: 32 }).primaryKey(),
  name: varchar('name', { length: 100 }).notNull(),
  ownerId: varchar('owner_id', { length: 32 }).notNull(),
  joinedAt: timestamp('joined_at').defaultNow().notNull(),
});

// 0001: categories a server sorts its tickets into.
export const ticketCategories = pgTable('ticket_categories', {
  id: serial('id').primaryKey(),
  serverId: varchar('server_id', { length: 32 }).notNull().references(() => servers.id, { onDelete: 'cascade' }),
  name: varchar('name', { length: 50 }).notNull(),
  emoji: varchar('emoji', { length: 32 }),
}, (t) => [
  unique('ticket_categories_server_name_unique').on(t.serverId, t.name),
]);

export const tickets = pgTable('tickets', {
  id: serial('id').primaryKey(),
  serverId: varchar('server_id', { length: 32 }).notNull().references(() => servers.id, { onDelete: 'cascade' }),
  creatorId: varchar('creator_id', { length: 32 }).notNull().references(() => discordUsers.id),
  title: varchar('title', { length: 200 }).notNull(),
  description: text('description'),
  status: varchar('status', { length: 20 }).default('open').notNull(),
  createdAt: timestamp('created_at').defaultNow().notNull(),
  closedAt: timestamp('closed_at'),
  categoryId: integer('category_id').references(() => ticketCategories.id, { onDelete: 'set null' }),
}, (t) => [
  index('tickets_server_status_idx').on(t.serverId, t.status),
]);

// 0002: go-live announcements (the stream bot's streamers, announced in Discord).
export const streamNotificationSettings = pgTable('stream_notification_settings', {
  id: serial('id').primaryKey(),
  serverId: varchar('server_id', { length: 32 }).notNull().unique()
    .references(() => servers.id, { onDelete: 'cascade' }),
  channelId: varchar('channel_id', { length: 32 }).notNull(),
  messageTemplate: text('message_template').default('{streamer} is live: {url}').notNull(),
  enabled: boolean('enabled').default(true).notNull(),
});

export const trackedStreamers = pgTable('tracked_streamers', {
  id: serial('id').primaryKey(),
  serverId: varchar('server_id', { length: 32 }).notNull().references(() => servers.id, { onDelete: 'cascade' }),
  platform: varchar('platform', { length: 20 }).notNull(),
  platformUsername: varchar('platform_username', { length: 100 }).notNull(),
  isLive: boolean('is_live').default(false).notNull(),
  lastLiveAt: timestamp('last_live_at'),
}, (t) => [
  unique('tracked_streamers_server_platform_user_unique').on(t.serverId, t.platform, t.platformUsername),
]);
