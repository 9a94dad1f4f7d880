//! A PostgreSQL database of one test, made on the real server and dropped
//! afterwards (on panic too), for tests that drive the real `cojobs`
//! binary against PostgreSQL. Plain, blocking helpers: each call runs on a
//! runtime of its own.
//!
//! Base URL from `COJOBS_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`). No server is a failure that
//! says how to start one, never a skip.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::NoTls;

pub fn base_url() -> String {
    std::env::var("COJOBS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// `base` with its database replaced by `db`.
pub fn url_for(base: &str, db: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let host_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    let mut url = format!("{}/{db}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Run `sql` on a fresh connection to `url`; its rows.
fn query(url: &str, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
        let conn = tokio::spawn(conn);
        let rows = client.query(sql, &[]).await;
        drop(client);
        let _ = conn.await;
        rows
    })
}

fn admin(sql: &str) {
    let base = base_url();
    if let Err(e) = runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&base, NoTls).await?;
        let conn = tokio::spawn(conn);
        let r = client.batch_execute(sql).await;
        drop(client);
        let _ = conn.await;
        r
    }) {
        panic!(
            "PostgreSQL at {base}: {sql}: {e}; start the server with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             or point COJOBS_TEST_PG at one"
        );
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database of one test; dropped (connections and all) with this.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("cojobs_b_{}_{n}", std::process::id());
        // Two calls: one string of two statements is one transaction
        // block, where neither may run.
        admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin(&format!("CREATE DATABASE {name}"));
        PgDb {
            url: url_for(&base_url(), &name),
            name,
        }
    }

    /// Rows of `sql`, or the error (the server may be restarting).
    pub fn try_rows(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        query(&self.url, sql)
    }

    pub fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.try_rows(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// One integer (cast it to int8 in `sql`).
    pub fn int(&self, sql: &str) -> i64 {
        self.rows(sql)[0].get(0)
    }

    /// [`PgDb::int`], `None` while the server cannot answer.
    pub fn try_int(&self, sql: &str) -> Option<i64> {
        self.try_rows(sql).ok().map(|r| r[0].get(0))
    }

    pub fn exec(&self, sql: &str) {
        self.rows(sql);
    }

    /// The first 50 rows of `cm_co_jobs`, for failure messages.
    pub fn dump(&self) -> String {
        self.rows(
            "SELECT concat_ws(' | ', id, co_id, job_type, status, max_retry_count, \
                    requeued_from_co_job_id, start_time, complete_time, start_summary, \
                    finish_summary, runner_id) FROM cm_co_jobs ORDER BY id LIMIT 50",
        )
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread of its own: Drop may run inside a caller's runtime.
        let dropped = std::thread::spawn(move || {
            std::panic::catch_unwind(|| {
                admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
