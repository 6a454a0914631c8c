//! gateway: the GraphQL edge frontend teams query (async-graphql over the gRPC
//! mesh, with batched timeline hydration). The implementation lands with the
//! gateway issue.
