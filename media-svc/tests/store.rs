//! The embedded metadata store: the conformance suite, each case on a
//! database of its own, and a record that survives closing and reopening.

use std::path::Path;
use std::sync::{Arc, Mutex};

use warble_media_svc::store::{EmbeddedMediaStore, MediaStore, Removal, State, conformance};

fn open_in(data_dir: &Path) -> EmbeddedMediaStore {
    let database = warble_mesh::embedded::open_shared(data_dir).expect("open the database");
    EmbeddedMediaStore::open(database).expect("open the media store")
}

#[tokio::test]
async fn embedded_store_passes_the_conformance_suite() {
    let data_dirs = Mutex::new(Vec::new());
    conformance::run_all(|| {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn MediaStore> = Arc::new(open_in(data_dir.path()));
        data_dirs.lock().expect("not poisoned").push(data_dir);
        std::future::ready(store)
    })
    .await;
}

/// A removal begun before a restart is still due after it, so the next
/// process finishes it: deleting survives restarts.
#[tokio::test]
async fn a_removal_in_progress_survives_reopening() {
    let data_dir = tempfile::tempdir().unwrap();
    let record = conformance::image(77, 5);
    let due_at = record.due_ms;
    {
        let store = open_in(data_dir.path());
        store.insert(&record).await.unwrap();
        assert!(matches!(
            store.begin_removal(77, due_at).await.unwrap(),
            Removal::Remove(_)
        ));
    }
    let store = open_in(data_dir.path());
    assert_eq!(store.due(due_at, 10).await.unwrap(), vec![77]);
    let reopened = store
        .get_many(&[77])
        .await
        .unwrap()
        .pop()
        .flatten()
        .unwrap();
    assert_eq!(reopened.state, State::Removing);
    store.finish_removal(77).await.unwrap();
    assert_eq!(store.get_many(&[77]).await.unwrap(), vec![None]);
}
