/* workerbus's PostgreSQL schema: versioned migrations, applied in order
 * under an advisory lock by whoever opens the database first (wb__pg_migrate():
 * the postgres queue, the builtin broker's replicas, the plugin's presence
 * records). Append; never edit an applied one. */
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
    {2, "builtin broker replicas: registry, worker presence and the outbox",
     /* One row per replica (a server process and its bundled broker), kept
      * alive by its heartbeat; a replica whose heartbeat is older than the
      * timeout is gone. */
     "CREATE TABLE workerbus_replicas ("
     "  id text PRIMARY KEY,"
     "  host text NOT NULL,"
     "  pid integer NOT NULL,"
     "  broker text NOT NULL,"
     "  started_at timestamptz NOT NULL DEFAULT now(),"
     "  heartbeat_at timestamptz NOT NULL DEFAULT now());"
     /* Which replica's broker holds each worker's connection; the newer
      * connection (higher epoch: microseconds of its CONNECT) wins. */
     "CREATE TABLE workerbus_presence ("
     "  pool text NOT NULL,"
     "  worker text NOT NULL,"
     "  replica text NOT NULL,"
     "  epoch bigint NOT NULL,"
     "  since timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (pool, worker));"
     "CREATE INDEX workerbus_presence_replica ON workerbus_presence (replica);"
     /* Messages of the server for workers connected elsewhere or nowhere,
      * in order per worker (id). A replica delivering a row claims it until
      * claimed_until; it deletes the row once its broker acknowledged it. */
     "CREATE TABLE workerbus_outbox ("
     "  id bigserial PRIMARY KEY,"
     "  pool text NOT NULL,"
     "  worker text NOT NULL,"
     "  topic text NOT NULL,"
     "  payload bytea NOT NULL,"
     "  qos smallint NOT NULL,"
     "  sender text NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now(),"
     "  expires_at timestamptz NOT NULL,"
     "  claimed_by text,"
     "  claimed_until timestamptz);"
     "CREATE INDEX workerbus_outbox_worker ON workerbus_outbox (pool, worker, id);"
     "CREATE INDEX workerbus_outbox_expiry ON workerbus_outbox (expires_at);"},
    {3, "plans that stay fast at any queue size: the claim's index, autovacuum per table",
     /* The claim orders by (visible_at, id): an index with both serves the
      * ORDER BY ... LIMIT with no sort, however many rows are visible. */
     "CREATE INDEX message_queue_messages_claim ON message_queue_messages (queue, visible_at, id);"
     "DROP INDEX message_queue_messages_ready;"
     /* Queue tables churn: every message is inserted, updated and deleted
      * within seconds. The default scale factors (20% of the table) wait
      * for a dead-row pile the size of the backlog; fixed thresholds vacuum
      * and analyze these tables after a few thousand changes whatever
      * their size. */
     "ALTER TABLE message_queue_messages SET (autovacuum_vacuum_scale_factor = 0,"
     "  autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_insert_scale_factor = 0,"
     "  autovacuum_vacuum_insert_threshold = 20000, autovacuum_analyze_scale_factor = 0,"
     "  autovacuum_analyze_threshold = 20000);"
     "ALTER TABLE workerbus_outbox SET (autovacuum_vacuum_scale_factor = 0,"
     "  autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_insert_scale_factor = 0,"
     "  autovacuum_vacuum_insert_threshold = 20000, autovacuum_analyze_scale_factor = 0,"
     "  autovacuum_analyze_threshold = 20000);"},
    {4, "leaner writes: wake-ups sent by the statements, no expiry index",
     /* Every message is written three times (insert, claim, delete). The
      * statement triggers (a PL/pgSQL call over a transition table) cost
      * an insert about 12 us of PostgreSQL's CPU, the expiry index about 8
      * (measured with pgbench against a plain INSERT's 62-72): the
      * statements that make messages visible now notify themselves, and
      * the once-a-minute housekeeping reads the table instead of an index
      * every insert and claim must update. */
     "DROP TRIGGER message_queue_messages_inserted ON message_queue_messages;"
     "DROP TRIGGER message_queue_messages_visible ON message_queue_messages;"
     "DROP FUNCTION workerbus_notify_inserted();"
     "DROP FUNCTION workerbus_notify_visible();"
     "DROP INDEX message_queue_messages_expiry;"},
};

#endif
