//! tweet-svc over real gRPC: each test starts the real server on a port-0
//! listener with its own data directory and talks to it with the generated
//! client. One binary for every integration test keeps linking cheap.

mod helpers;

mod create;
mod create_many;
mod delete;
mod engagement;
mod events;
mod paging;
mod read;
mod restart;
mod scan;
mod social;
mod store_scylla;
