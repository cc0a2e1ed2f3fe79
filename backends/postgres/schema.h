/* The PostgreSQL queue's schema: versioned migrations, applied in order under
 * an advisory lock by wb_queue_open(). Append; never edit an applied one. */
#ifndef WB_PG_SCHEMA_H
#define WB_PG_SCHEMA_H

/* The advisory lock key: "workerbus" in ASCII, folded to 63 bits. */
#define WB_PG_MIGRATION_LOCK 0x776f726b65726275LL

static const struct wb_pg_migration {
    int version;
    const char *description;
    const char *sql;
} wb_pg_migrations[] = {
    {1, "message queue tables, indexes and wake-up triggers",
     "CREATE TABLE message_queue_messages ("
     "  id bigserial PRIMARY KEY,"
     "  queue text NOT NULL,"
     "  body text NOT NULL,"
     "  group_id text,"
     "  dedup_id text,"
     "  sent_at timestamptz NOT NULL DEFAULT now(),"
     "  visible_at timestamptz NOT NULL DEFAULT now(),"
     "  expires_at timestamptz NOT NULL,"
     "  receive_count integer NOT NULL DEFAULT 0,"
     "  receipt bigint);"
     "CREATE INDEX message_queue_messages_ready ON message_queue_messages (queue, visible_at);"
     "CREATE INDEX message_queue_messages_groups ON message_queue_messages (queue, group_id, id)"
     "  WHERE group_id IS NOT NULL;"
     "CREATE INDEX message_queue_messages_expiry ON message_queue_messages (expires_at);"
     "CREATE TABLE message_queue_deduplications ("
     "  queue text NOT NULL,"
     "  group_id text NOT NULL,"
     "  dedup_id text NOT NULL,"
     "  message_id bigint NOT NULL,"
     "  expires_at timestamptz NOT NULL,"
     "  PRIMARY KEY (queue, group_id, dedup_id));"
     /* Waiters LISTEN on workerbus_queue; the payload is the queue's name.
      * Every insert wakes them (a delayed message moves their next wake-up);
      * an update wakes them when it makes a message visible now (visibility
      * set to 0, a redrive into a dead-letter queue). Notifications go out
      * on commit, once per queue per transaction. */
     "CREATE FUNCTION workerbus_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('workerbus_queue', q) FROM (SELECT DISTINCT queue AS q FROM"
     " new_rows) s; RETURN NULL; END $$;"
     "CREATE FUNCTION workerbus_notify_visible() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('workerbus_queue', q) FROM (SELECT DISTINCT queue AS q FROM"
     " new_rows WHERE visible_at <= now()) s; RETURN NULL; END $$;"
     "CREATE TRIGGER message_queue_messages_inserted AFTER INSERT ON message_queue_messages"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
     "  EXECUTE FUNCTION workerbus_notify_inserted();"
     "CREATE TRIGGER message_queue_messages_visible AFTER UPDATE ON message_queue_messages"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
     "  EXECUTE FUNCTION workerbus_notify_visible();"},
};

#endif
