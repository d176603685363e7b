CREATE TABLE "giveaway_entry_attempts" (
	"id" serial PRIMARY KEY NOT NULL,
	"giveaway_id" integer NOT NULL,
	"platform_username" varchar(100) NOT NULL,
	"platform" varchar(20) NOT NULL,
	"accepted" boolean NOT NULL,
	"attempted_at" timestamp DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "giveaways" ADD COLUMN "entry_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "giveaway_entry_attempts" ADD CONSTRAINT "giveaway_entry_attempts_giveaway_id_giveaways_id_fk" FOREIGN KEY ("giveaway_id") REFERENCES "public"."giveaways"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "giveaway_entry_attempts_giveaway_time_idx" ON "giveaway_entry_attempts" USING btree ("giveaway_id","attempted_at");--> statement-breakpoint
ALTER TABLE "giveaway_entries" ADD CONSTRAINT "giveaway_entries_giveaway_user_unique" UNIQUE("giveaway_id","platform","platform_username");--> statement-breakpoint
-- custom (not generated): count the entries that already exist
UPDATE "giveaways" SET "entry_count" = (SELECT count(*) FROM "giveaway_entries" WHERE "giveaway_entries"."giveaway_id" = "giveaways"."id");
