//! Warble's gRPC contracts: the generated messages, clients and servers of
//! every `warble.*.v1` package, the file descriptor set that servers
//! register for reflection, and the contracts' numeric [`limits`].

pub mod limits;

/// Encoded `FileDescriptorSet` of every Warble proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("warble_descriptor");

/// Every fully qualified gRPC service name Warble defines.
pub const SERVICE_NAMES: &[&str] = &[
    "warble.tweet.v1.TweetService",
    "warble.graph.v1.GraphService",
    "warble.timeline.v1.TimelineService",
    "warble.fanout.v1.FanoutService",
    "warble.notify.v1.NotifyService",
    "warble.search.v1.SearchService",
    "warble.media.v1.MediaService",
];

pub mod common {
    pub mod v1 {
        tonic::include_proto!("warble.common.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("warble.events.v1");
    }
}

pub mod tweet {
    pub mod v1 {
        tonic::include_proto!("warble.tweet.v1");
    }
}

pub mod graph {
    pub mod v1 {
        tonic::include_proto!("warble.graph.v1");
    }
}

pub mod timeline {
    pub mod v1 {
        tonic::include_proto!("warble.timeline.v1");
    }
}

pub mod fanout {
    pub mod v1 {
        tonic::include_proto!("warble.fanout.v1");
    }
}

pub mod notify {
    pub mod v1 {
        tonic::include_proto!("warble.notify.v1");
    }
}

pub mod search {
    pub mod v1 {
        tonic::include_proto!("warble.search.v1");
    }
}

pub mod media {
    pub mod v1 {
        tonic::include_proto!("warble.media.v1");
    }
}
