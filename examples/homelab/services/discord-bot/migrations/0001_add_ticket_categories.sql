CREATE TABLE "ticket_categories" (
	"id" serial PRIMARY KEY NOT NULL,
	"server_id" varchar(32) NOT NULL,
	"name" varchar(50) NOT NULL,
	"emoji" varchar(32),
	CONSTRAINT "ticket_categories_server_name_unique" UNIQUE("server_id","name")
);
--> statement-breakpoint
ALTER TABLE "tickets" ADD COLUMN "category_id" integer;--> statement-breakpoint
ALTER TABLE "ticket_categories" ADD CONSTRAINT "ticket_categories_server_id_servers_id_fk" FOREIGN KEY ("server_id") REFERENCES "public"."servers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tickets" ADD CONSTRAINT "tickets_category_id_ticket_categories_id_fk" FOREIGN KEY ("category_id") REFERENCES "public"."ticket_categories"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "tickets_server_status_idx" ON "tickets" USING btree ("server_id","status");