-- websession: the tables PostgresStore uses, for those who run migrations themselves.
-- `await store.migrate()` runs the same statements. Replace websession_sessions with the
-- `table` option's value if you set one (the lock table and the indexes are named after it).
-- Times are kept to the microsecond, so the records' millisecond timestamps come back exactly;
-- they are only ever compared with the application's clock, passed in as a parameter (never the
-- server's now()). The database must use the UTF8 encoding.
CREATE TABLE IF NOT EXISTS "websession_sessions" (
  id text PRIMARY KEY,
  data jsonb NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  user_id text
);
-- Sessions per user (listUserSessions, endUserSessions): added to a table made by an earlier
-- version. migrate() runs it only when the column is missing.
ALTER TABLE "websession_sessions" ADD COLUMN IF NOT EXISTS user_id text;
CREATE INDEX IF NOT EXISTS "websession_sessions_expires_at_idx" ON "websession_sessions" (expires_at);
CREATE INDEX IF NOT EXISTS "websession_sessions_user_id_idx" ON "websession_sessions" (user_id)
  WHERE user_id IS NOT NULL;
-- Locks (session.lock()), each lapsing at until: milliseconds since the epoch, by the application's
-- clock. `_leases` is the name of earlier versions; kept so that old and new processes share locks.
CREATE TABLE IF NOT EXISTS "websession_sessions_leases" (
  key text PRIMARY KEY,
  owner text NOT NULL,
  until bigint NOT NULL
);
