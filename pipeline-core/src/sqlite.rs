//! One SQLite file shared by the queues and the embedded orchestrator, and by every
//! process pointed at the same data dir. WAL mode lets readers run beside the one
//! writer; `BEGIN IMMEDIATE` transactions make receive-and-lock atomic across processes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// A failure of the SQLite file.
#[derive(Debug, thiserror::Error)]
#[error("sqlite: {0}")]
pub struct DbError(String);

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

impl DbError {
    /// An error with a message of our own.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A cloneable handle on one connection. Calls run on tokio's blocking pool, one at a time per handle.
#[derive(Clone, Debug)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Db {
    /// Opens (creating if needed) the database file.
    ///
    /// # Errors
    /// The file cannot be opened or set up.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DbError(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), changed: Arc::new(tokio::sync::Notify::new()) })
    }

    /// [`Db::call`] with every commit of `f` flushed to disk before it returns
    /// (`synchronous=FULL`): for what must survive a power loss once acknowledged, such as an
    /// accepted job. Other writes keep `NORMAL`, which WAL makes safe against a crash of the
    /// process but may lose the last commits on a power loss.
    ///
    /// # Errors
    /// As [`Db::call`].
    pub async fn call_durable<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.call(move |conn| {
            conn.pragma_update(None, "synchronous", "FULL").map_err(|e| E::from(e.into()))?;
            let result = f(conn);
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| E::from(e.into()))?;
            result
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    ///
    /// # Errors
    /// Whatever `f` returns, or a [`DbError`] if the task was lost.
    pub async fn call<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still sound.
            let mut guard = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .unwrap_or_else(|e| Err(E::from(DbError(format!("database task failed: {e}")))))
    }

    /// Wakes this process's waiters (long polls) after a write they may care about.
    /// Other processes notice by polling.
    pub fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`Db::notify_changed`] in this process.
    pub fn changed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.changed)
    }

    /// Runs `f` with the connection on the current thread (for set-up code).
    pub fn call_sync<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}
