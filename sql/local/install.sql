-- =================================================================================================
--  LOCAL STAND-IN FOR AURORA'S aws_commons / aws_lambda EXTENSIONS.
--  FOR DEVELOPMENT AND TESTS ONLY. NEVER INSTALL THIS ON AURORA OR RDS.
--  (It refuses to install where the real aws_lambda extension is installed or available.)
-- =================================================================================================
--
-- Why it exists: the trigger in sql/install.sql calls aws_lambda.invoke(...), which only exists on
-- Aurora / RDS for PostgreSQL. This file creates schemas aws_commons and aws_lambda with the SAME
-- function signatures as the real extension (AWS "AWS Lambda function and parameter reference" for
-- Aurora PostgreSQL), so the production trigger runs unchanged on a plain PostgreSQL:
--
--   aws_commons.create_lambda_function_arn(function_name text, region text DEFAULT NULL)
--       RETURNS aws_commons._lambda_function_arn_1
--   aws_lambda.invoke(function_name text, payload json|jsonb, region text DEFAULT NULL,
--                     invocation_type text DEFAULT 'RequestResponse', log_type text DEFAULT 'None',
--                     context json|jsonb DEFAULT NULL, qualifier varchar(128) DEFAULT NULL,
--                     OUT status_code int, OUT payload json|jsonb, OUT executed_version text,
--                     OUT log_result text)
--   aws_lambda.invoke(function_name aws_commons._lambda_function_arn_1, payload json|jsonb,
--                     invocation_type ..., log_type ..., context ..., qualifier ..., same OUT columns)
--
-- The fields of aws_commons._lambda_function_arn_1 are not documented by AWS; here they are
-- (function_name text, region text). Nothing in dqad reads them: code only passes the value from
-- create_lambda_function_arn to invoke, which is how AWS documents its use.
--
-- Instead of calling Lambda, each invoke:
--   * records the call in aws_lambda.invocations (function, region, payload, invocation type), and
--   * sends NOTIFY dqad_lambda_invocations with the call's id as payload (NOTIFY payloads are limited
--     to 8000 bytes, so the listener reads the call itself from the table by id).
--   The local bridge (`dqad listen --dsn ...`) LISTENs and forwards each call to the fetcher.
--
-- Failure injection: SELECT aws_lambda.set_failing(true) makes every later invoke raise, in every
-- session (the flag is a table row, not a session variable); set_failing(false) restores.
--
-- One behaviour differs from Aurora on purpose and cannot be helped: the real invoke happens the
-- moment it is called, even if the transaction later rolls back. Here the recorded call and its
-- NOTIFY are transactional, so a rolled-back insert leaves no trace. Tests for "the fetcher tolerates
-- a log id that does not exist" therefore invoke the fetcher directly with such an id.
--
-- Idempotent: apply it twice and nothing changes (recorded calls and the failing flag are kept).

DO $guard$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname IN ('aws_lambda', 'aws_commons'))
       OR EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'aws_lambda') THEN
        RAISE EXCEPTION 'dqad: refusing to install the local aws_lambda stand-in: the real aws_lambda '
                        'extension is installed or available here (Aurora/RDS?). The stand-in is '
                        'for development databases only.';
    END IF;
END;
$guard$;

CREATE SCHEMA IF NOT EXISTS aws_commons;
CREATE SCHEMA IF NOT EXISTS aws_lambda;
COMMENT ON SCHEMA aws_lambda IS 'dqad LOCAL STAND-IN for the aws_lambda extension: dev/tests only.';
COMMENT ON SCHEMA aws_commons IS 'dqad LOCAL STAND-IN for the aws_commons extension: dev/tests only.';

DO $type$
BEGIN
    IF to_regtype('aws_commons._lambda_function_arn_1') IS NULL THEN
        CREATE TYPE aws_commons._lambda_function_arn_1 AS (function_name text, region text);
    END IF;
END;
$type$;

CREATE TABLE IF NOT EXISTS aws_lambda.invocations (
    id              bigserial PRIMARY KEY,
    function_name   text NOT NULL,
    region          text,
    payload         jsonb,
    invocation_type text NOT NULL,
    log_type        text,
    qualifier       text,
    called_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE aws_lambda.invocations IS
    'dqad local stand-in: one row per aws_lambda.invoke call; NOTIFY dqad_lambda_invocations carries the id.';

-- The failing switch, a single row so that it holds across sessions and connections.
CREATE TABLE IF NOT EXISTS aws_lambda.stand_in_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    failing    boolean NOT NULL DEFAULT false,
    message    text NOT NULL DEFAULT 'simulated Lambda failure',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO aws_lambda.stand_in_state (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

CREATE OR REPLACE FUNCTION aws_lambda.set_failing(
    failing boolean,
    message text DEFAULT 'simulated Lambda failure')
    RETURNS boolean
    LANGUAGE sql
AS $fn$
    INSERT INTO aws_lambda.stand_in_state AS s (singleton, failing, message, updated_at)
    VALUES (true, $1, coalesce($2, 'simulated Lambda failure'), now())
    ON CONFLICT (singleton) DO UPDATE
        SET failing = EXCLUDED.failing, message = EXCLUDED.message, updated_at = EXCLUDED.updated_at
    RETURNING s.failing;
$fn$;
COMMENT ON FUNCTION aws_lambda.set_failing(boolean, text) IS
    'dqad local stand-in: make every later aws_lambda.invoke raise (true) or work again (false).';

CREATE OR REPLACE FUNCTION aws_commons.create_lambda_function_arn(
    function_name text,
    region text DEFAULT NULL)
    RETURNS aws_commons._lambda_function_arn_1
    LANGUAGE sql
    IMMUTABLE
AS $fn$
    SELECT ROW($1, $2)::aws_commons._lambda_function_arn_1;
$fn$;

-- The one implementation behind all four invoke overloads: validates like the real extension,
-- honours the failing switch, records the call and notifies. Returns the recorded call's id.
CREATE OR REPLACE FUNCTION aws_lambda._record_invoke(
    p_function_name   text,
    p_region          text,
    p_payload         jsonb,
    p_invocation_type text,
    p_log_type        text,
    p_qualifier       text)
    RETURNS bigint
    LANGUAGE plpgsql
AS $fn$
DECLARE
    v_state  aws_lambda.stand_in_state;
    v_region text := p_region;
    v_arn_region text;
    v_id     bigint;
BEGIN
    SELECT * INTO v_state FROM aws_lambda.stand_in_state WHERE singleton;
    IF v_state.failing THEN
        RAISE EXCEPTION 'aws_lambda stand-in: invoke of % failed: %', p_function_name, v_state.message
            USING ERRCODE = 'external_routine_exception',
                  HINT = 'SELECT aws_lambda.set_failing(false) to make invokes succeed again';
    END IF;
    IF p_function_name IS NULL OR btrim(p_function_name) = '' THEN
        RAISE EXCEPTION 'aws_lambda stand-in: function_name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Values are case-sensitive, as in the real extension.
    IF p_invocation_type IS NULL OR p_invocation_type NOT IN ('RequestResponse', 'Event', 'DryRun') THEN
        RAISE EXCEPTION 'aws_lambda stand-in: invalid invocation_type %, expected RequestResponse, Event or DryRun',
                        coalesce(p_invocation_type, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_log_type IS NULL OR p_log_type NOT IN ('None', 'Tail') THEN
        RAISE EXCEPTION 'aws_lambda stand-in: invalid log_type %, expected None or Tail',
                        coalesce(p_log_type, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A full ARN carries its region; a conflicting region argument is an error on Aurora too.
    v_arn_region := substring(p_function_name FROM '^arn:[^:]+:lambda:([^:]+):');
    IF v_arn_region IS NOT NULL AND v_region IS NOT NULL AND v_arn_region <> v_region THEN
        RAISE EXCEPTION 'aws_lambda stand-in: region % conflicts with the region % of ARN %',
                        v_region, v_arn_region, p_function_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_region := coalesce(v_region, v_arn_region);

    INSERT INTO aws_lambda.invocations
        (function_name, region, payload, invocation_type, log_type, qualifier)
    VALUES (p_function_name, v_region, p_payload, p_invocation_type, p_log_type, p_qualifier)
    RETURNING id INTO v_id;
    PERFORM pg_notify('dqad_lambda_invocations', v_id::text);
    RETURN v_id;
END;
$fn$;

-- Status codes as Lambda's Invoke API returns them: 202 for Event, 204 for DryRun, 200 otherwise.
-- No function actually runs, so there is no response payload. The bodies are LANGUAGE sql because
-- the real signatures use the name "payload" for both an IN and an OUT parameter, which PostgreSQL
-- accepts for a function but PL/pgSQL cannot compile.

-- invoke(text, jsonb, region, ...)
CREATE OR REPLACE FUNCTION aws_lambda.invoke(
    IN function_name text,
    IN payload jsonb,
    IN region text DEFAULT NULL,
    IN invocation_type text DEFAULT 'RequestResponse',
    IN log_type text DEFAULT 'None',
    IN context jsonb DEFAULT NULL,
    IN qualifier varchar(128) DEFAULT NULL,
    OUT status_code int,
    OUT payload jsonb,
    OUT executed_version text,
    OUT log_result text)
    LANGUAGE sql
AS $fn$
    SELECT CASE $4 WHEN 'Event' THEN 202 WHEN 'DryRun' THEN 204 ELSE 200 END,
           NULL::jsonb,
           CASE WHEN $4 = 'RequestResponse' THEN coalesce($7::text, '$LATEST') END,
           NULL::text
      FROM (SELECT aws_lambda._record_invoke($1, $3, $2, $4, $5, $7) AS id) AS recorded
     WHERE recorded.id IS NOT NULL;
$fn$;

-- invoke(text, json, region, ...)
CREATE OR REPLACE FUNCTION aws_lambda.invoke(
    IN function_name text,
    IN payload json,
    IN region text DEFAULT NULL,
    IN invocation_type text DEFAULT 'RequestResponse',
    IN log_type text DEFAULT 'None',
    IN context json DEFAULT NULL,
    IN qualifier varchar(128) DEFAULT NULL,
    OUT status_code int,
    OUT payload json,
    OUT executed_version text,
    OUT log_result text)
    LANGUAGE sql
AS $fn$
    -- the jsonb overload below does the work; only the payload's type differs
    SELECT r.status_code, r.payload::json, r.executed_version, r.log_result
      FROM aws_lambda.invoke($1, $2::jsonb, $3, $4, $5, $6::jsonb, $7) AS r;
$fn$;

-- invoke(_lambda_function_arn_1, json, ...)
CREATE OR REPLACE FUNCTION aws_lambda.invoke(
    IN function_name aws_commons._lambda_function_arn_1,
    IN payload json,
    IN invocation_type text DEFAULT 'RequestResponse',
    IN log_type text DEFAULT 'None',
    IN context json DEFAULT NULL,
    IN qualifier varchar(128) DEFAULT NULL,
    OUT status_code int,
    OUT payload json,
    OUT executed_version text,
    OUT log_result text)
    LANGUAGE sql
AS $fn$
    -- the (text, jsonb) overload does the work: the ARN type only carries function name and region
    SELECT r.status_code, r.payload::json, r.executed_version, r.log_result
      FROM aws_lambda.invoke(($1).function_name, $2::jsonb, ($1).region, $3, $4, $5::jsonb, $6) AS r;
$fn$;

-- invoke(_lambda_function_arn_1, jsonb, ...)
CREATE OR REPLACE FUNCTION aws_lambda.invoke(
    IN function_name aws_commons._lambda_function_arn_1,
    IN payload jsonb,
    IN invocation_type text DEFAULT 'RequestResponse',
    IN log_type text DEFAULT 'None',
    IN context jsonb DEFAULT NULL,
    IN qualifier varchar(128) DEFAULT NULL,
    OUT status_code int,
    OUT payload jsonb,
    OUT executed_version text,
    OUT log_result text)
    LANGUAGE sql
AS $fn$
    SELECT r.status_code, r.payload, r.executed_version, r.log_result
      FROM aws_lambda.invoke(($1).function_name, $2, ($1).region, $3, $4, $5, $6) AS r;
$fn$;
