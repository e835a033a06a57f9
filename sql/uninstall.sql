-- dqad: remove the Aurora trigger and its function. Idempotent: applying it twice is fine, and so is
-- applying it where dqad was never installed.
--
-- It stops all invocations at once and leaves the ETL's table untouched. The two data tables are
-- KEPT on purpose: edo_dms.dqad_outbox may still hold loads that were never delivered, and
-- edo_dms.dqad_settings holds the per-environment configuration a reinstall picks up again. To remove
-- them too, after checking the outbox is drained
-- (SELECT count(*) FROM edo_dms.dqad_outbox WHERE delivered_at IS NULL), run:
--   DROP TABLE IF EXISTS edo_dms.dqad_outbox;
--   DROP TABLE IF EXISTS edo_dms.dqad_settings;
-- To pause dqad without uninstalling, set the kill switch instead:
--   INSERT INTO edo_dms.dqad_settings(key, value) VALUES ('enabled', 'false')
--   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

DO $drop$
BEGIN
    -- DROP TRIGGER IF EXISTS still fails when the table itself is missing; check the table first.
    IF to_regclass('edo_dms.qe_query_logs') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS edm_trigger_ad_lambdainvoke ON edo_dms.qe_query_logs;
    END IF;
END;
$drop$;

DROP FUNCTION IF EXISTS edo_dms.edm_func_ad_lambdainvoke();
