-- DEVELOPMENT ONLY: log one successful load of dq.metrics_daily, as the ETL would when it finishes.
-- With sql/local/install.sql, sql/local/qe_query_logs.sql and sql/install.sql applied and the
-- settings configured, this INSERT fires the trigger, which records an 'Event' invocation of the
-- fetcher in aws_lambda.invocations and NOTIFYs dqad_lambda_invocations; `dqad listen` forwards it
-- to the fetcher and the demo dataset (triggered by table dq.metrics_daily) runs end to end.
--
--   psql "$DSN" -v ON_ERROR_STOP=1 -f sql/local/sample_insert.sql
--
-- Not idempotent by nature: each application is a new load with a new log_id (and a new run).
INSERT INTO edo_dms.qe_query_logs
    (job_name, table_name, status, row_count, started_at, ended_at, loaded_at, query_text, run_host)
VALUES
    ('dq_metrics_daily', 'dq.metrics_daily', 'SUCCESS', 1440,
     now() - interval '3 minutes', now(), now(),
     'INSERT INTO dq.metrics_daily SELECT ... FROM staging.metrics_daily', 'talend-local')
RETURNING log_id, job_name, table_name, status, loaded_at;
