-- dqad: Aurora trigger that starts a data-quality run when an ETL load is logged.
--
-- What it installs (all in schema edo_dms, all idempotent: apply it twice, nothing changes):
--   edo_dms.dqad_settings              key/value configuration read by the trigger at run time
--                                      (fetcher_function, region, enabled). No resource names are
--                                      written in the function body: one script serves every env.
--   edo_dms.dqad_outbox                invocations that could not be made; a sweeper re-drives them.
--   edo_dms.edm_func_ad_lambdainvoke() the trigger function.
--   edm_trigger_ad_lambdainvoke        AFTER INSERT ... FOR EACH ROW trigger on edo_dms.qe_query_logs.
--
-- Prerequisites on Aurora (see sql/README.md): `CREATE EXTENSION IF NOT EXISTS aws_lambda CASCADE;`,
-- an IAM role attached to the cluster for feature "Lambda", and lambda:InvokeFunction on the fetcher.
-- This script does not create the extension: that needs rds_superuser, and where it is missing every
-- invoke simply lands in the outbox (see below) instead of failing the ETL.
--
-- Apply as one transaction: `psql -1 -v ON_ERROR_STOP=1 -f sql/install.sql`, or
-- `dqad.sqlinstall.install(conn, local=False)`. Then configure:
--   INSERT INTO edo_dms.dqad_settings(key, value) VALUES
--     ('fetcher_function', 'dqad-prod-fetcher'), ('region', 'eu-west-1')
--   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
--
-- The one rule this file is built around: THE ETL NEVER FAILS BECAUSE OF US. Whatever goes wrong
-- inside the trigger function (missing settings, a missing column, the invoke raising because Lambda
-- throttled, the network or a permission), the INSERT into qe_query_logs still commits. The failure
-- is recorded in edo_dms.dqad_outbox with its error text and reported with RAISE WARNING.

CREATE SCHEMA IF NOT EXISTS edo_dms;

-- Settings ---------------------------------------------------------------------------------------
-- Keys read by the trigger function:
--   fetcher_function  required  Lambda function name, partial ARN or full ARN of the fetcher
--   region            required  AWS region of that function (e.g. eu-west-1)
--   enabled           optional  'false' / 'off' / '0' / 'no' turns the trigger into a no-op (an
--                               operator kill switch: nothing is invoked and nothing is recorded).
--                               Absent or anything else means enabled.
CREATE TABLE IF NOT EXISTS edo_dms.dqad_settings (
    key        text PRIMARY KEY,
    value      text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE edo_dms.dqad_settings IS
    'dqad trigger configuration: fetcher_function, region, enabled. Read at every trigger call.';

-- Outbox -----------------------------------------------------------------------------------------
-- One row per invocation that could not be made. The sweeper (fetcher entry point, on a schedule)
-- claims undelivered rows with FOR UPDATE SKIP LOCKED (claimed_at is a lease, so a sweeper that dies
-- mid-way does not strand its rows), sends the payload on, and sets delivered_at. The payload is the
-- exact payload the trigger would have sent; run ids are derived from it deterministically, so a
-- re-drive of an invoke that did in fact get through collapses into the same run downstream.
CREATE TABLE IF NOT EXISTS edo_dms.dqad_outbox (
    id           bigserial PRIMARY KEY,
    log_id       text,
    payload      jsonb NOT NULL,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    claimed_at   timestamptz,
    delivered_at timestamptz,
    last_error   text
);
COMMENT ON TABLE edo_dms.dqad_outbox IS
    'dqad invocations that failed in the trigger; re-driven once each by the sweeper.';
-- The sweeper only ever scans undelivered rows; keep that scan small however large history grows.
CREATE INDEX IF NOT EXISTS dqad_outbox_undelivered_idx
    ON edo_dms.dqad_outbox (id) WHERE delivered_at IS NULL;

-- Trigger function -------------------------------------------------------------------------------
-- Reads the new row through to_jsonb(NEW) rather than NEW.<column>: a column that does not exist in
-- the real table then yields NULL instead of an error, so a schema difference between environments
-- can never break an ETL insert. Columns read (all optional except as noted by the WHEN guard):
--   log_id, else id   -> "log_id"      (text, at most 64 characters)
--   job_name          -> "job_name"    (at most 256 characters)
--   table_name        -> "table_name"  (at most 256 characters)
--   loaded_at, else ended_at, else the statement time -> "loaded_at" (ISO 8601, UTC, "Z")
--   status            -> "status"      (at most 32 characters)
--   row_count         -> "row_count"   (text, at most 20 characters; only when not NULL)
-- The limits are the ones of the LoadCompleted event contract, so the payload stays well under
-- 1 KiB whatever the ETL writes (query texts and error messages are never sent).
--
-- SECURITY DEFINER: the function runs with the rights of its owner (the installing role, which is
-- granted EXECUTE on aws_lambda.invoke), so the ETL's login role needs no aws_lambda grant at all.
-- search_path is pinned and every object is schema-qualified, as PostgreSQL advises for such functions.
--
-- Cost: each call enters one or two plpgsql exception blocks (subtransactions). That is negligible
-- next to a Lambda call, and qe_query_logs receives one row per load, not per data row.
CREATE OR REPLACE FUNCTION edo_dms.edm_func_ad_lambdainvoke()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_row       jsonb;
    v_payload   jsonb;
    v_log_id    text;
    v_loaded    text;
    v_function  text;
    v_region    text;
    v_enabled   text;
    v_error     text;
    v_state     text;
    v_outbox_id bigint;
BEGIN
    -- Outside the error-to-outbox block on purpose: attached to any other table, or fired other
    -- than AFTER INSERT FOR EACH ROW, the function refuses loudly instead of invoking the fetcher
    -- with a row someone else chose (it runs with its owner's rights).
    IF TG_TABLE_SCHEMA <> 'edo_dms' OR TG_TABLE_NAME <> 'qe_query_logs'
       OR TG_OP <> 'INSERT' OR TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'dqad: edo_dms.edm_func_ad_lambdainvoke() only runs as the AFTER INSERT row '
                        'trigger of edo_dms.qe_query_logs, not on %.% (% % %)',
                        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_WHEN, TG_OP, TG_LEVEL
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    BEGIN
        v_row := to_jsonb(NEW);
        v_log_id := left(coalesce(v_row ->> 'log_id', v_row ->> 'id'), 64);

        v_loaded := coalesce(v_row ->> 'loaded_at', v_row ->> 'ended_at');
        BEGIN
            -- Normalise to UTC with a "Z": a naive timestamp is read in the session time zone,
            -- exactly as PostgreSQL itself converts timestamp to timestamptz.
            v_loaded := to_char(coalesce(v_loaded::timestamptz, statement_timestamp())
                                    AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
        EXCEPTION WHEN OTHERS THEN
            v_loaded := left(v_loaded, 64);  -- not a timestamp: pass it on, the fetcher rejects it
        END;

        v_payload := jsonb_build_object(
            'log_id',     v_log_id,
            'job_name',   left(v_row ->> 'job_name', 256),
            'table_name', left(v_row ->> 'table_name', 256),
            'loaded_at',  v_loaded,
            'status',     left(v_row ->> 'status', 32),
            'source',     'aurora-trigger'
        );
        -- The load's own row count, when the log has one: a successful load of 0 rows is reported as
        -- an empty load at once (dqad_fetcher.domain.report_empty_load). Absent or NULL: not sent.
        IF v_row ->> 'row_count' IS NOT NULL THEN
            v_payload := v_payload || jsonb_build_object('row_count', left(v_row ->> 'row_count', 20));
        END IF;

        SELECT max(value) FILTER (WHERE key = 'fetcher_function'),
               max(value) FILTER (WHERE key = 'region'),
               max(value) FILTER (WHERE key = 'enabled')
          INTO v_function, v_region, v_enabled
          FROM edo_dms.dqad_settings
         WHERE key IN ('fetcher_function', 'region', 'enabled');

        IF lower(btrim(coalesce(v_enabled, 'true'))) IN ('false', 'off', '0', 'no') THEN
            RETURN NULL;  -- kill switch
        END IF;

        IF nullif(btrim(v_function), '') IS NULL OR nullif(btrim(v_region), '') IS NULL THEN
            RAISE EXCEPTION 'dqad settings missing: set keys fetcher_function and region in '
                            'edo_dms.dqad_settings (found fetcher_function=%, region=%)',
                            coalesce(v_function, '<none>'), coalesce(v_region, '<none>')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;

        -- 'Event': asynchronous; Lambda queues the event and returns 202 at once, so the ETL's
        -- insert waits for one API round trip, never for the fetcher to run.
        PERFORM aws_lambda.invoke(
            aws_commons.create_lambda_function_arn(btrim(v_function), btrim(v_region)),
            v_payload::json,
            'Event'
        );
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        v_error := left(format('[%s] %s', v_state, v_error), 2000);
        BEGIN
            INSERT INTO edo_dms.dqad_outbox (log_id, payload, error)
            VALUES (v_log_id,
                    coalesce(v_payload, jsonb_build_object('log_id', v_log_id,
                                                           'source', 'aurora-trigger')),
                    v_error)
            RETURNING id INTO v_outbox_id;
            RAISE WARNING 'dqad: fetcher invoke failed for qe_query_logs log_id %; '
                          'recorded in edo_dms.dqad_outbox id % for re-drive: %',
                          coalesce(v_log_id, '<none>'), v_outbox_id, v_error;
        EXCEPTION WHEN OTHERS THEN
            -- Even the outbox is unusable (dropped, no privilege, disk full): the event is lost,
            -- the load is not. The warning reaches the ETL client's log.
            GET STACKED DIAGNOSTICS v_state = MESSAGE_TEXT;
            RAISE WARNING 'dqad: fetcher invoke failed for qe_query_logs log_id % (%) and the '
                          'outbox insert failed too (%); no run will start for this load',
                          coalesce(v_log_id, '<none>'), v_error, v_state;
        END;
    END;
    RETURN NULL;  -- AFTER trigger: the return value is ignored
END;
$fn$;

-- PostgreSQL grants EXECUTE on a new function to PUBLIC: without this, any role with USAGE on
-- edo_dms could attach this SECURITY DEFINER function to a table of its own and invoke the fetcher
-- with rows it forges. Firing the trigger needs no EXECUTE; creating one does.
REVOKE EXECUTE ON FUNCTION edo_dms.edm_func_ad_lambdainvoke() FROM PUBLIC;

COMMENT ON FUNCTION edo_dms.edm_func_ad_lambdainvoke() IS
    'dqad: invokes the fetcher (aws_lambda.invoke, Event) for a logged load; on any error records '
    'the payload in edo_dms.dqad_outbox and raises a WARNING instead of failing the insert.';

-- Trigger ----------------------------------------------------------------------------------------
-- WHEN guard: only rows that can concern a dataset reach the function (and so the Lambda API):
--   * status, trimmed and upper-cased, is in the SUCCESS SET below. This is an allow-list on
--     purpose: a failed, aborted, running or unknown (typo, NULL) status must not start a run on data
--     that is missing or half-loaded; a new success spelling is added here, in one place. WARNING
--     is in the set because a load that finished with warnings did write data, and a partial or
--     odd load is exactly what dqad exists to catch.
--   * table_name is present: without it no dataset can match.
-- Everything else (which datasets a table feeds, unknown tables) is the fetcher's decision.
-- Assumption: the ETL writes its log row once, when the load ends. If it inserts 'RUNNING' and later
-- UPDATEs the status, an AFTER UPDATE OF status trigger with the same guard is needed as well.
-- DROP + CREATE rather than CREATE OR REPLACE TRIGGER, which needs PostgreSQL 14 while Aurora
-- clusters on 11-13 are still common. Applied with psql -1 or sqlinstall, the pair is one transaction.
DROP TRIGGER IF EXISTS edm_trigger_ad_lambdainvoke ON edo_dms.qe_query_logs;
CREATE TRIGGER edm_trigger_ad_lambdainvoke
    AFTER INSERT ON edo_dms.qe_query_logs
    FOR EACH ROW
    WHEN (upper(btrim(NEW.status)) IN ('SUCCESS', 'SUCCEEDED', 'SUCCESSFUL', 'OK',
                                       'COMPLETED', 'COMPLETE', 'DONE', 'WARNING')
          AND NEW.table_name IS NOT NULL)
    EXECUTE FUNCTION edo_dms.edm_func_ad_lambdainvoke();

-- Tell the installer, not the ETL, when invokes cannot work yet.
DO $check$
BEGIN
    -- (pg_proc, not to_regprocedure: the latter raises when the argument type's schema is missing)
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'aws_lambda' AND p.proname = 'invoke') THEN
        RAISE NOTICE 'dqad: aws_lambda.invoke is not installed in this database; every trigger call '
                     'will be recorded in edo_dms.dqad_outbox until it is '
                     '(on Aurora: CREATE EXTENSION aws_lambda CASCADE)';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM edo_dms.dqad_settings
                    WHERE key IN ('fetcher_function', 'region')
                      AND nullif(btrim(value), '') IS NOT NULL
                   HAVING count(*) = 2) THEN
        RAISE NOTICE 'dqad: settings fetcher_function and region are not both set in '
                     'edo_dms.dqad_settings; trigger calls go to the outbox until they are';
    END IF;
END;
$check$;
