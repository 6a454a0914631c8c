//! The schema as a library: built here, executed by the HTTP layer or
//! directly by tests with `schema.execute(request)`.

use std::sync::Arc;

use async_graphql::{ErrorExtensions as _, Schema};

use crate::config::LimitsConfig;
use crate::error::ErrorCode;
use crate::resolvers::{GatewayState, MutationRoot, QueryRoot, SubscriptionRoot};

/// Warble's GraphQL schema.
pub type WarbleSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema with its complexity limit; `state` is shared by every
/// request. Depth is limited by [`crate::admission`] instead, which leaves
/// introspection to its own rule: run requests through
/// [`crate::executor::EdgeExecutor`]. No extensions: with one installed,
/// async-graphql sends every field through the extension chain (see
/// [`crate::query_cache`]), and [`crate::joined`] would skip it.
pub fn build(state: Arc<GatewayState>, limits: &LimitsConfig, introspection: bool) -> WarbleSchema {
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .data(state)
    .limit_complexity(limits.max_complexity);
    if introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The schema's SDL (what `schema.graphql` holds).
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .finish()
    .sdl()
}

/// Gives every error a stable `extensions.code`: errors raised before
/// execution (syntax, validation, depth and complexity limits) are the
/// client's (BAD_USER_INPUT); any other error without a code is INTERNAL.
pub fn classify_errors(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if error.path.is_empty() {
            ErrorCode::BadUserInput
        } else {
            ErrorCode::Internal
        };
        let extended = async_graphql::Error::new(error.message.clone())
            .extend_with(|_, extensions| extensions.set("code", code.as_str()));
        error.extensions = extended.extensions;
    }
}
