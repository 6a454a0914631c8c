//! The FanoutService gRPC surface: GetStatus.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use warble_mesh::consumer::backlog;
use warble_mesh::event_log::EventLog;
use warble_proto::fanout::v1::fanout_service_server::FanoutService;
use warble_proto::fanout::v1::{GetStatusRequest, GetStatusResponse};

use crate::error::FanoutError;
use crate::stats::FanoutStats;

/// Serves GetStatus from the live counters and the event log's lag.
pub struct FanoutApi {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) stats: Arc<FanoutStats>,
    pub(crate) group: String,
    /// The group's partitions (see `warble_mesh::consumer`).
    pub(crate) partitions: u32,
    pub(crate) workers: u32,
}

#[tonic::async_trait]
impl FanoutService for FanoutApi {
    #[tracing::instrument(skip_all)]
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let (consumer_lag, _) = backlog(self.log.as_ref(), &self.group, self.partitions)
            .await
            .map_err(FanoutError::from)?;
        let stats = &self.stats;
        Ok(Response::new(GetStatusResponse {
            consumer_lag,
            events_processed: FanoutStats::get(&stats.consumer.events_processed),
            deliveries_written: FanoutStats::get(&stats.deliveries_written),
            retries: FanoutStats::get(&stats.consumer.retries),
            dead_letters: FanoutStats::get(&stats.consumer.dead_letters),
            groups_vanished: FanoutStats::get(&stats.consumer.groups_vanished),
            events_failed: FanoutStats::get(&stats.consumer.events_failed),
            workers: self.workers,
        }))
    }
}
