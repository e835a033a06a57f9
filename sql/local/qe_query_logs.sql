-- =================================================================================================
--  DEVELOPMENT COPY of the ETL log table edo_dms.qe_query_logs. FOR DEVELOPMENT AND TESTS ONLY.
--  On Aurora the real table belongs to the ETL team; never apply this file there.
-- =================================================================================================
--
-- Every ETL (Talend) load writes one row here when it ends; the dqad trigger (sql/install.sql) fires
-- on that INSERT. The columns mirror what such a log holds; only some are read by dqad:
--
--   column        read by dqad?  how
--   ------------  -------------  ----------------------------------------------------------------
--   log_id        yes            payload "log_id" (the trigger also accepts a column named "id")
--   job_name      yes            payload "job_name" (truncated to 256 characters)
--   table_name    yes            WHEN guard (must be NOT NULL) and payload "table_name" (256 chars)
--   status        yes            WHEN guard (success set, see sql/install.sql) and payload "status"
--   loaded_at     yes            payload "loaded_at" (UTC); falls back to ended_at, then to now()
--   ended_at      fallback       used when loaded_at is NULL or absent
--   row_count     yes            payload "row_count" when not NULL (a 0-row load is an empty load);
--                                the freshness check reads it with the load history
--   started_at    freshness      the freshness check reads it with the history (a load's duration);
--                                never sent by the trigger
--   query_text, error_message, run_host, created_by: never read, and never sent: they can be large
--   (query_text) or sensitive.
--
-- The WHEN guard of the trigger names NEW.status and NEW.table_name, so the real table must have
-- those two columns; every other column is read through to_jsonb(NEW) and may be missing.
--
-- Idempotent: CREATE ... IF NOT EXISTS; an existing table and its rows are left as they are.

CREATE SCHEMA IF NOT EXISTS edo_dms;

CREATE TABLE IF NOT EXISTS edo_dms.qe_query_logs (
    log_id        bigserial PRIMARY KEY,
    job_name      text NOT NULL,
    table_name    text,
    status        text NOT NULL,
    row_count     bigint,
    started_at    timestamptz,
    ended_at      timestamptz,
    loaded_at     timestamptz DEFAULT now(),
    query_text    text,
    error_message text,
    run_host      text,
    created_by    text NOT NULL DEFAULT current_user
);

COMMENT ON TABLE edo_dms.qe_query_logs IS
    'DEVELOPMENT COPY of the ETL load log (dqad sql/local/qe_query_logs.sql); the real one is on Aurora.';

CREATE INDEX IF NOT EXISTS qe_query_logs_table_loaded_idx
    ON edo_dms.qe_query_logs (table_name, loaded_at);
