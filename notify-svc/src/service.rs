//! The NotifyService gRPC surface: request validation, then the store.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_mesh::cursor;
use warble_mesh::event_log::EventLog;
use warble_proto::limits::notify::{
    DEFAULT_PAGE_LIMIT, MAX_BATCH, MAX_NEW_ACCOUNT_DAYS, MAX_PAGE_LIMIT,
};
use warble_proto::notify::v1 as pb;
use warble_proto::notify::v1::notify_service_server::NotifyService;

use crate::engine::NotifyStats;
use crate::error::NotifyError;
use crate::store::{
    Group, Kind, ListQuery, NotificationStore, Settings, StrangerPolicy, UNREAD_CAP,
};

/// Cursor kinds: a cursor of the main list cannot page the filtered one.
const MAIN_CURSOR: u8 = 0x4e;
const FILTERED_CURSOR: u8 = 0x4f;

/// Serves NotifyService from a store, and GetStatus from the consumer's counters.
#[derive(Clone)]
pub struct NotifyApi {
    pub(crate) store: Arc<dyn NotificationStore>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) stats: Arc<NotifyStats>,
    pub(crate) group: String,
    /// The group's partitions (see `warble_mesh::consumer`).
    pub(crate) partitions: u32,
    pub(crate) workers: u32,
}

fn recipient(id: u64) -> Result<u64, NotifyError> {
    if id == 0 {
        return Err(NotifyError::invalid("recipient_id", "must be set"));
    }
    Ok(id)
}

fn kind_number(kind: Kind) -> i32 {
    kind as i32
}

fn to_proto(group: Group) -> pb::NotificationGroup {
    pb::NotificationGroup {
        group_id: group.id,
        r#type: kind_number(group.kind),
        recipient_id: group.recipient,
        count: group.count,
        actor_ids: group.actors,
        tweet_id: group.tweet_id,
        latest_at_ms: group.latest_at_ms,
        position: group.position,
        unread: group.unread,
        filtered: group.filtered,
        cursor: String::new(),
    }
}

fn settings_to_proto(settings: Settings) -> pb::NotificationSettings {
    pb::NotificationSettings {
        mentions_from_strangers: match settings.mentions_from_strangers {
            StrangerPolicy::Accept => pb::StrangerPolicy::Accept as i32,
            StrangerPolicy::Filter => pb::StrangerPolicy::Filter as i32,
        },
        new_accounts_days: settings.new_accounts_days,
    }
}

fn settings_from_proto(
    settings: Option<pb::NotificationSettings>,
) -> Result<Settings, NotifyError> {
    let settings = settings.unwrap_or_default();
    let mentions_from_strangers =
        match pb::StrangerPolicy::try_from(settings.mentions_from_strangers) {
            Ok(pb::StrangerPolicy::Accept) => StrangerPolicy::Accept,
            Ok(pb::StrangerPolicy::Filter) => StrangerPolicy::Filter,
            Err(_) => {
                return Err(NotifyError::invalid(
                    "settings.mentions_from_strangers",
                    "unknown policy",
                ));
            }
        };
    if settings.new_accounts_days > MAX_NEW_ACCOUNT_DAYS {
        return Err(NotifyError::invalid(
            "settings.new_accounts_days",
            format!("must be at most {MAX_NEW_ACCOUNT_DAYS}"),
        ));
    }
    Ok(Settings {
        mentions_from_strangers,
        new_accounts_days: settings.new_accounts_days,
    })
}

#[tonic::async_trait]
impl NotifyService for NotifyApi {
    #[tracing::instrument(skip_all)]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let request = request.into_inner();
        let recipient = recipient(request.recipient_id)?;
        let page = request.page.unwrap_or_default();
        let limit = match page.limit {
            0 => DEFAULT_PAGE_LIMIT,
            limit if limit > MAX_PAGE_LIMIT => {
                return Err(NotifyError::invalid(
                    "page.limit",
                    format!("must be at most {MAX_PAGE_LIMIT}"),
                )
                .into());
            }
            limit => limit,
        };
        let cursor_kind = if request.filtered {
            FILTERED_CURSOR
        } else {
            MAIN_CURSOR
        };
        let before = match cursor::decode::<2>(cursor_kind, &page.cursor)
            .map_err(|error| NotifyError::invalid("page.cursor", error.to_string()))?
        {
            None => None,
            Some([owner, position]) if owner == recipient => Some(position),
            Some(_) => {
                return Err(NotifyError::invalid(
                    "page.cursor",
                    "cursor belongs to another recipient's list",
                )
                .into());
            }
        };
        let mut kinds = Vec::with_capacity(request.types.len());
        for number in &request.types {
            let kind = Kind::from_number(*number).ok_or_else(|| {
                NotifyError::invalid("types", format!("unknown notification type {number}"))
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        let page = self
            .store
            .list(ListQuery {
                recipient,
                before,
                limit: limit as usize,
                kinds,
                filtered: request.filtered,
                now_ms: warble_mesh::time::now_ms() as i64,
            })
            .await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            groups: page
                .groups
                .into_iter()
                .map(|group| {
                    let cursor = cursor::encode(cursor_kind, &[recipient, group.position]);
                    pb::NotificationGroup {
                        cursor,
                        ..to_proto(group)
                    }
                })
                .collect(),
            page: Some(warble_proto::common::v1::PageResponse {
                next_cursor: page
                    .next_before
                    .map(|position| cursor::encode(cursor_kind, &[recipient, position]))
                    .unwrap_or_default(),
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_notifications(
        &self,
        request: Request<pb::GetNotificationsRequest>,
    ) -> Result<Response<pb::GetNotificationsResponse>, Status> {
        let request = request.into_inner();
        let recipient = recipient(request.recipient_id)?;
        if request.group_ids.len() > MAX_BATCH {
            return Err(NotifyError::invalid(
                "group_ids",
                format!("at most {MAX_BATCH} ids per call"),
            )
            .into());
        }
        let groups = self.store.get(recipient, &request.group_ids).await?;
        Ok(Response::new(pb::GetNotificationsResponse {
            groups: groups.into_iter().map(to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        let recipient = recipient(request.into_inner().recipient_id)?;
        let unread = self.store.unread(recipient, UNREAD_CAP).await?;
        Ok(Response::new(pb::GetUnreadCountResponse {
            unread: unread.count,
            capped: unread.capped,
            read_up_to: unread.read_up_to,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let request = request.into_inner();
        let recipient = recipient(request.recipient_id)?;
        let up_to = (request.up_to_group_id != 0).then_some(request.up_to_group_id);
        let read_up_to = self.store.mark_read(recipient, up_to).await?;
        Ok(Response::new(pb::MarkReadResponse { read_up_to }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        let recipient = recipient(request.into_inner().recipient_id)?;
        let settings = self.store.settings(recipient).await?;
        Ok(Response::new(pb::GetSettingsResponse {
            settings: Some(settings_to_proto(settings)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        let request = request.into_inner();
        let recipient = recipient(request.recipient_id)?;
        let settings = settings_from_proto(request.settings)?;
        self.store.set_settings(recipient, settings).await?;
        Ok(Response::new(pb::UpdateSettingsResponse {
            settings: Some(settings_to_proto(settings)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let (consumer_lag, _) =
            warble_mesh::consumer::backlog(self.log.as_ref(), &self.group, self.partitions)
                .await
                .map_err(NotifyError::from)?;
        let stats = &self.stats;
        let consumer = &stats.consumer;
        use warble_mesh::consumer::ConsumerCounters as Counters;
        Ok(Response::new(pb::GetStatusResponse {
            consumer_lag,
            events_processed: Counters::get(&consumer.events_processed),
            items_added: NotifyStats::get(&stats.items_added),
            items_removed: NotifyStats::get(&stats.items_removed),
            events_stale: NotifyStats::get(&stats.events_stale),
            retries: Counters::get(&consumer.retries),
            dead_letters: Counters::get(&consumer.dead_letters),
            groups_vanished: Counters::get(&consumer.groups_vanished),
            events_failed: Counters::get(&consumer.events_failed),
            workers: self.workers,
        }))
    }
}
