//! The graph service over real gRPC: each test starts a server on port 0 with
//! its own data directory and talks to it through the generated client.

mod api {
    pub mod helpers;

    mod batches;
    mod blocks;
    mod events;
    mod follows;
    mod identities;
    mod lists;
    mod paging;
    mod profiles;
    mod restart;
    mod scan;
    mod store_neo4j;
    mod users;
}
