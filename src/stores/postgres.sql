-- websession: the table PostgresStore uses, for those who run migrations themselves.
-- `await store.migrate()` runs the same two statements. Replace websession_sessions with the
-- `table` option's value if you set one. Times are kept to the microsecond, so the records'
-- millisecond timestamps come back exactly; they are only ever compared with the application's
-- clock, passed in as a parameter (never the server's now()). The database must use the UTF8
-- encoding.
CREATE TABLE IF NOT EXISTS "websession_sessions" (
  id text PRIMARY KEY,
  data jsonb NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS "websession_sessions_expires_at_idx" ON "websession_sessions" (expires_at);
