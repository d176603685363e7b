CREATE TABLE "stream_notification_settings" (
	"id" serial PRIMARY KEY NOT NULL,
	"server_id" varchar(32) NOT NULL,
	"channel_id" varchar(32) NOT NULL,
	"message_template" text DEFAULT '{streamer} is live: {url}' NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	CONSTRAINT "stream_notification_settings_server_id_unique" UNIQUE("server_id")
);
--> statement-breakpoint
CREATE TABLE "tracked_streamers" (
	"id" serial PRIMARY KEY NOT NULL,
	"server_id" varchar(32) NOT NULL,
	"platform" varchar(20) NOT NULL,
	"platform_username" varchar(100) NOT NULL,
	"is_live" boolean DEFAULT false NOT NULL,
	"last_live_at" timestamp,
	CONSTRAINT "tracked_streamers_server_platform_user_unique" UNIQUE("server_id","platform","platform_username")
);
--> statement-breakpoint
ALTER TABLE "stream_notification_settings" ADD CONSTRAINT "stream_notification_settings_server_id_servers_id_fk" FOREIGN KEY ("server_id") REFERENCES "public"."servers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tracked_streamers" ADD CONSTRAINT "tracked_streamers_server_id_servers_id_fk" FOREIGN KEY ("server_id") REFERENCES "public"."servers"("id") ON DELETE cascade ON UPDATE no action;