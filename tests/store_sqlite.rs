//! The store conformance suite (`tests/conformance/`) against the SQLite
//! driver: the same bodies `tests/postgres.rs` runs against PostgreSQL,
//! each on a fresh database file in a temporary directory.

mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use cojobs::store::driver::JobStore;
use cojobs::store::sqlite::SqliteStore;
use conformance::Harness;

struct SqliteHarness {
    store: Arc<SqliteStore>,
    path: std::path::PathBuf,
    // Last: the directory outlives the store's connection.
    _dir: tempfile::TempDir,
}

impl SqliteHarness {
    async fn new() -> SqliteHarness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let store = Arc::new(SqliteStore::open(&path).expect("open"));
        SqliteHarness {
            store,
            path,
            _dir: dir,
        }
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    fn store(&self) -> Arc<dyn JobStore> {
        self.store.clone()
    }

    async fn another(&self) -> Arc<dyn JobStore> {
        Arc::new(SqliteStore::open(&self.path).expect("open again"))
    }

    async fn sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.path).expect("open for SQL");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn.execute_batch(sql).expect("plain SQL");
    }
}

conformance_tests!(SqliteHarness::new);
