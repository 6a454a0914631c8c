//! The embedded database file that holds a process's durable state when it
//! runs without external stores.
//!
//! Stores and the embedded event log share one `redb` database per data
//! directory, so a store write and the event it publishes commit in one
//! transaction: there is no tweet without its event and no event without its
//! tweet. redb allows one open handle per file, so handles are shared through
//! a process-wide registry: services started in one process on the same data
//! directory get the same database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// File name of the database inside a data directory.
pub const DATABASE_FILE: &str = "warble.redb";

/// Bytes of pages the database keeps in memory unless told otherwise
/// (redb's own default). The operating system caches the file as well, so
/// a smaller cache costs copies from the page cache rather than disk reads
/// while memory allows.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// Why the embedded database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// redb refused to open the file (locked by another process, corrupt, ...).
    #[error("cannot open embedded database {path}")]
    Database {
        path: PathBuf,
        source: redb::DatabaseError,
    },
}

/// Opens (creating if needed) the database in `data_dir`, or returns the
/// handle this process already has open for it.
pub fn open_shared(data_dir: &Path) -> Result<Arc<redb::Database>, OpenError> {
    open_shared_with_cache(data_dir, DEFAULT_CACHE_BYTES)
}

/// [`open_shared`] keeping at most `cache_bytes` of pages in memory. The
/// first opener in a process sets the size: a handle already open is
/// returned as it is. `/metrics` shows what the cache holds
/// (`warble_embedded_cache_bytes`, by database file).
pub fn open_shared_with_cache(
    data_dir: &Path,
    cache_bytes: usize,
) -> Result<Arc<redb::Database>, OpenError> {
    static OPEN: Mutex<Option<HashMap<PathBuf, Weak<redb::Database>>>> = Mutex::new(None);

    std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned())
        .join(DATABASE_FILE);
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let open = open.get_or_insert_with(HashMap::new);
    open.retain(|_, handle| handle.strong_count() > 0);
    if let Some(database) = open.get(&path).and_then(Weak::upgrade) {
        return Ok(database);
    }
    let database = Arc::new(
        redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|source| OpenError::Database {
                path: path.clone(),
                source,
            })?,
    );
    let handle = Arc::downgrade(&database);
    crate::metrics::gauge_fn(
        "warble_embedded_cache_bytes",
        "Bytes of database pages the embedded database (redb) keeps in memory.",
        &[("file", &path.display().to_string())],
        move || {
            handle
                .upgrade()
                .map_or(0.0, |database| cache_bytes_of(&database) as f64)
        },
    );
    open.insert(path, Arc::downgrade(&database));
    Ok(database)
}

/// Bytes of pages `database` keeps in memory now (its read cache and
/// write buffer).
pub fn cache_bytes_of(database: &redb::Database) -> usize {
    use redb::ReadableDatabase as _;
    database.cache_stats().used_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_directory_shares_one_handle() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_shared(dir.path()).unwrap();
        let second = open_shared(dir.path()).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        drop((first, second));
        // After every handle is dropped the file can be opened again (a restart).
        open_shared(dir.path()).unwrap();
    }

    #[test]
    fn the_cache_counts_the_pages_it_holds_up_to_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let database = open_shared_with_cache(dir.path(), 4 << 20).unwrap();
        const ROWS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("rows");
        let value = vec![7u8; 1024];
        for batch in 0..16u64 {
            let txn = database.begin_write().unwrap();
            {
                let mut table = txn.open_table(ROWS).unwrap();
                for row in 0..1024u64 {
                    table.insert(batch * 1024 + row, value.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        // 16 MiB written through a 4 MiB cache: it holds pages, never more than its size.
        let held = cache_bytes_of(&database);
        assert!(held > 0 && held <= 4 << 20, "{held}");
    }
}
