//! The embedded metadata store: redb, in the data dir. Each operation is
//! one transaction, so a claim of four ids, or a removal decision and its
//! index update, is atomic.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, Table, TableDefinition};

use super::{
    Conflict, Kind, MediaRecord, MediaStore, Removal, RemovalDecision, State, removal_decision,
};
use crate::error::MediaError;

/// Media id → record (JSON).
const MEDIA: TableDefinition<u64, &[u8]> = TableDefinition::new("media_records");
/// (due time, media id): the records the sweeper may delete, soonest first.
const DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("media_due");

/// See the module docs.
#[derive(Clone)]
pub struct EmbeddedMediaStore {
    database: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedMediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedMediaStore").finish_non_exhaustive()
    }
}

type MediaTable<'txn> = Table<'txn, u64, &'static [u8]>;
type DueTable<'txn> = Table<'txn, (i64, u64), ()>;

fn read(table: &MediaTable<'_>, id: u64) -> Result<Option<MediaRecord>, MediaError> {
    match table.get(id).map_err(MediaError::storage)? {
        Some(bytes) => MediaRecord::decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

fn write(
    media: &mut MediaTable<'_>,
    due: &mut DueTable<'_>,
    before: Option<&MediaRecord>,
    after: &MediaRecord,
) -> Result<(), MediaError> {
    if let Some(before) = before
        && indexed(before)
    {
        due.remove((before.due_ms, before.id))
            .map_err(MediaError::storage)?;
    }
    if indexed(after) {
        due.insert((after.due_ms, after.id), ())
            .map_err(MediaError::storage)?;
    }
    media
        .insert(after.id, after.encode().as_slice())
        .map_err(MediaError::storage)?;
    Ok(())
}

/// Whether a record belongs in the due index (everything but attached).
fn indexed(record: &MediaRecord) -> bool {
    !matches!(record.state, State::Attached { .. })
}

impl EmbeddedMediaStore {
    /// Opens the media tables in `database` (creating them).
    pub fn open(database: Arc<Database>) -> Result<Self, MediaError> {
        let txn = database.begin_write().map_err(MediaError::storage)?;
        txn.open_table(MEDIA).map_err(MediaError::storage)?;
        txn.open_table(DUE).map_err(MediaError::storage)?;
        txn.commit().map_err(MediaError::storage)?;
        Ok(Self { database })
    }

    /// Runs `work` in one write transaction on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut MediaTable<'_>, &mut DueTable<'_>) -> Result<T, MediaError>
        + Send
        + 'static,
    ) -> Result<T, MediaError> {
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || {
            let txn = database.begin_write().map_err(MediaError::storage)?;
            let value = {
                let mut media = txn.open_table(MEDIA).map_err(MediaError::storage)?;
                let mut due = txn.open_table(DUE).map_err(MediaError::storage)?;
                work(&mut media, &mut due)?
            };
            txn.commit().map_err(MediaError::storage)?;
            Ok(value)
        })
        .await
        .map_err(MediaError::Processing)?
    }
}

#[async_trait]
impl MediaStore for EmbeddedMediaStore {
    async fn insert(&self, record: &MediaRecord) -> Result<(), MediaError> {
        let record = record.clone();
        self.write(move |media, due| write(media, due, None, &record))
            .await
    }

    async fn get_many(&self, ids: &[u64]) -> Result<Vec<Option<MediaRecord>>, MediaError> {
        let database = self.database.clone();
        let ids = ids.to_vec();
        tokio::task::spawn_blocking(move || {
            let txn = database.begin_read().map_err(MediaError::storage)?;
            let media = txn.open_table(MEDIA).map_err(MediaError::storage)?;
            ids.iter()
                .map(|id| match media.get(*id).map_err(MediaError::storage)? {
                    Some(bytes) => MediaRecord::decode(bytes.value()).map(Some),
                    None => Ok(None),
                })
                .collect()
        })
        .await
        .map_err(MediaError::Processing)?
    }

    async fn claim(
        &self,
        owner_id: u64,
        ids: &[u64],
        claim_key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Result<(), (u64, Conflict)>, MediaError> {
        let ids = ids.to_vec();
        let claim_key = claim_key.to_owned();
        self.write(move |media, due| {
            let mut records = Vec::with_capacity(ids.len());
            for &id in &ids {
                let Some(record) = read(media, id)? else {
                    return Ok(Err((id, Conflict::Missing)));
                };
                if let Err(conflict) = record.claimable(owner_id, &claim_key, now_ms) {
                    return Ok(Err((id, conflict)));
                }
                records.push(record);
            }
            // Only now, with every id checked, does anything change: the
            // transaction would roll back anyway, but this keeps it short.
            for before in records {
                if matches!(before.state, State::Attached { .. }) {
                    // Attached through this very key: a retried post.
                    continue;
                }
                let after = MediaRecord {
                    state: State::Claimed {
                        key: claim_key.clone(),
                        until_ms,
                    },
                    ..before.clone()
                };
                write(media, due, Some(&before), &after)?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn release(&self, owner_id: u64, ids: &[u64], claim_key: &str) -> Result<(), MediaError> {
        let ids = ids.to_vec();
        let claim_key = claim_key.to_owned();
        self.write(move |media, due| {
            for &id in &ids {
                let Some(before) = read(media, id)? else {
                    continue;
                };
                if before.owner_id == owner_id
                    && matches!(&before.state, State::Claimed { key, .. } if *key == claim_key)
                {
                    let after = MediaRecord {
                        state: State::Uploaded,
                        attached_by_claim: String::new(),
                        ..before.clone()
                    };
                    write(media, due, Some(&before), &after)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn attach(
        &self,
        tweet_id: u64,
        owner_id: u64,
        ids: &[u64],
    ) -> Result<Vec<(u64, Conflict)>, MediaError> {
        let ids = ids.to_vec();
        self.write(move |media, due| {
            let mut skipped = Vec::new();
            for &id in &ids {
                let Some(before) = read(media, id)? else {
                    skipped.push((id, Conflict::Missing));
                    continue;
                };
                match attach_decision(&before, tweet_id, owner_id) {
                    Ok(true) => {
                        let attached_by_claim = match &before.state {
                            State::Claimed { key, .. } => key.clone(),
                            _ => String::new(),
                        };
                        let after = MediaRecord {
                            state: State::Attached { tweet_id },
                            attached_by_claim,
                            ..before.clone()
                        };
                        write(media, due, Some(&before), &after)?;
                    }
                    Ok(false) => {}
                    Err(conflict) => skipped.push((id, conflict)),
                }
            }
            Ok(skipped)
        })
        .await
    }

    async fn use_as_avatar(
        &self,
        owner_id: u64,
        id: u64,
    ) -> Result<Result<MediaRecord, Conflict>, MediaError> {
        self.write(move |media, due| {
            let Some(before) = read(media, id)? else {
                return Ok(Err(Conflict::Missing));
            };
            if let Err(conflict) = avatar_decision(&before, owner_id) {
                return Ok(Err(conflict));
            }
            let after = MediaRecord {
                state: State::Attached { tweet_id: 0 },
                ..before.clone()
            };
            write(media, due, Some(&before), &after)?;
            Ok(Ok(after))
        })
        .await
    }

    async fn schedule_deletion(
        &self,
        tweet_id: u64,
        ids: &[u64],
        due_ms: i64,
    ) -> Result<(), MediaError> {
        let ids = ids.to_vec();
        self.write(move |media, due| {
            for &id in &ids {
                let Some(before) = read(media, id)? else {
                    continue;
                };
                if before.state == (State::Attached { tweet_id }) && tweet_id != 0 {
                    let after = MediaRecord {
                        state: State::Deleting,
                        due_ms,
                        ..before.clone()
                    };
                    write(media, due, Some(&before), &after)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<u64>, MediaError> {
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || {
            let txn = database.begin_read().map_err(MediaError::storage)?;
            let due = txn.open_table(DUE).map_err(MediaError::storage)?;
            let mut ids = Vec::new();
            for entry in due
                .range((i64::MIN, 0)..=(now_ms, u64::MAX))
                .map_err(MediaError::storage)?
                .take(limit)
            {
                let (key, _) = entry.map_err(MediaError::storage)?;
                ids.push(key.value().1);
            }
            Ok(ids)
        })
        .await
        .map_err(MediaError::Processing)?
    }

    async fn begin_removal(&self, id: u64, now_ms: i64) -> Result<Removal, MediaError> {
        self.write(move |media, due| {
            let Some(before) = read(media, id)? else {
                // Not indexed by a record: clear any stray index entry.
                let stray: Vec<(i64, u64)> = due
                    .iter()
                    .map_err(MediaError::storage)?
                    .filter_map(Result::ok)
                    .map(|(key, _)| key.value())
                    .filter(|(_, entry_id)| *entry_id == id)
                    .collect();
                for key in stray {
                    due.remove(key).map_err(MediaError::storage)?;
                }
                return Ok(Removal::Keep);
            };
            match removal_decision(&before, now_ms) {
                RemovalDecision::Remove => {
                    let after = MediaRecord {
                        state: State::Removing,
                        ..before.clone()
                    };
                    write(media, due, Some(&before), &after)?;
                    Ok(Removal::Remove(Box::new(after)))
                }
                RemovalDecision::Undue => {
                    due.remove((before.due_ms, id))
                        .map_err(MediaError::storage)?;
                    Ok(Removal::Keep)
                }
                RemovalDecision::Later(due_ms) => {
                    let after = MediaRecord {
                        due_ms,
                        ..before.clone()
                    };
                    write(media, due, Some(&before), &after)?;
                    Ok(Removal::Keep)
                }
            }
        })
        .await
    }

    async fn finish_removal(&self, id: u64) -> Result<(), MediaError> {
        self.write(move |media, due| {
            if let Some(record) = read(media, id)? {
                due.remove((record.due_ms, id))
                    .map_err(MediaError::storage)?;
                media.remove(id).map_err(MediaError::storage)?;
            }
            Ok(())
        })
        .await
    }
}

/// Whether a TweetCreated attaches `record` to `tweet_id`: `Ok(true)` to
/// attach, `Ok(false)` when it already is, or why it cannot be.
pub(crate) fn attach_decision(
    record: &MediaRecord,
    tweet_id: u64,
    owner_id: u64,
) -> Result<bool, Conflict> {
    if record.owner_id != owner_id {
        return Err(Conflict::NotOwner);
    }
    match &record.state {
        State::Uploaded | State::Claimed { .. } => Ok(true),
        State::Attached { tweet_id: attached } if *attached == tweet_id => Ok(false),
        State::Attached { .. } => Err(Conflict::Attached),
        State::Deleting | State::Removing => Err(Conflict::Gone),
    }
}

/// Whether `record` may become `owner_id`'s avatar.
pub(crate) fn avatar_decision(record: &MediaRecord, owner_id: u64) -> Result<(), Conflict> {
    if record.owner_id != owner_id {
        return Err(Conflict::NotOwner);
    }
    if record.kind != Kind::Image {
        return Err(Conflict::NotImage);
    }
    match &record.state {
        State::Uploaded | State::Attached { tweet_id: 0 } => Ok(()),
        State::Claimed { .. } => Err(Conflict::Claimed),
        State::Attached { .. } => Err(Conflict::Attached),
        State::Deleting | State::Removing => Err(Conflict::Gone),
    }
}
