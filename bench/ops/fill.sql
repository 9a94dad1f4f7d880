-- The operator-command benchmark's table (docs/performance.md, issue 10
-- finding 9): 960,000 rows over 3 COs and 5 job types in every status,
-- plus one 40,000-row requeue chain with 2 KiB of log per row
-- (ids 2000001-2040000). Run on a database `cojobs migrate` made:
--   sqlite3 ops.db < bench/ops/fill.sql
INSERT OR IGNORE INTO cm_cos (id, name, status) VALUES (2, 'two', 'A'), (3, 'three', 'A');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 960000)
INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time, start_time,
                        complete_time, finish_summary, runner_id)
SELECT 1 + i % 3,
       CASE WHEN i % 1000 = 0 THEN 'rare' ELSE
         CASE i % 4 WHEN 0 THEN 'hello' WHEN 1 THEN 'sync' WHEN 2 THEN 'report' ELSE 'mail' END END,
       '{"n":' || i || '}',
       CASE WHEN i % 100 = 1 THEN 'X'
            WHEN i % 1000 = 2 THEN 'CX'
            WHEN i % 5000 = 3 THEN 'GO'
            WHEN i % 200 = 4 THEN 'Q'
            ELSE 'OK' END,
       datetime('2026-01-01', '+' || (i / 10) || ' seconds'),
       datetime('2026-01-01', '+' || (i / 10) || ' seconds'),
       CASE WHEN i % 5000 = 3 OR i % 200 = 4 THEN NULL
            ELSE datetime('2026-01-01', '+' || (i / 10 + 1) || ' seconds') END,
       'done ' || i,
       CASE WHEN i % 5000 = 3 THEN 'old-runner' END
FROM n;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 40000)
INSERT INTO cm_co_jobs (id, co_id, job_type, status, queue_time, start_time, complete_time,
                        requeued_from_co_job_id, job_log, requeue_interval)
SELECT 2000000 + i, 1, 'tick', CASE WHEN i = 40000 THEN 'Q' ELSE 'OK' END,
       datetime('2026-01-01', '+' || i || ' minutes'),
       CASE WHEN i < 40000 THEN datetime('2026-01-01', '+' || i || ' minutes') END,
       CASE WHEN i < 40000 THEN datetime('2026-01-01', '+' || i || ' minutes', '+1 second') END,
       CASE WHEN i > 1 THEN 2000000 + i - 1 END,
       hex(randomblob(1024)),
       60
FROM c;
