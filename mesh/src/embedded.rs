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
    let database =
        Arc::new(
            redb::Database::create(&path).map_err(|source| OpenError::Database {
                path: path.clone(),
                source,
            })?,
        );
    open.insert(path, Arc::downgrade(&database));
    Ok(database)
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
}
