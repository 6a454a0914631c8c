//! Objects whose fields resolve in one joined future.
//!
//! async-graphql resolves an object's fields by boxing one future per
//! selected field and driving them through a `FuturesUnordered` (a task
//! allocation, a waker registration and an atomic reference count each).
//! A feed page is 20 edges of about 16 fields, nearly all of them values
//! hydration already fetched, so that machinery was the largest cost of a
//! read in the gateway's profile (BENCHMARKS.md). [`Joined`] keeps the
//! schema and the answer the same and resolves the selected fields with
//! one `join_all` over the type's own field futures: one allocation per
//! object, and fields that wait (a DataLoader, a downstream call) still
//! wait concurrently. Keys come out in the order the query selected them.
//!
//! Only for object types (interfaces and unions keep async-graphql's
//! path). A field directive (a custom one: `@skip` and `@include` are
//! applied before execution) sends the object the stock way. Schema
//! extensions would be skipped, and async-graphql offers no public way to
//! ask whether any is installed: the gateway's schema has none by design
//! ([`crate::schema::build`] says so).

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::indexmap::map::Entry;
use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::{ContainerType, resolve_container};
use async_graphql::{
    ContextSelectionSet, Name, OutputType, Positioned, ServerError, ServerResult, Value,
};

/// An object type resolved with its fields joined (see the module docs);
/// to the schema it is `T` itself.
#[derive(Debug, Clone)]
pub struct Joined<T>(pub T);

impl<T: ContainerType> OutputType for Joined<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_joined(ctx, &self.0).await
    }
}

/// One selected field: `__typename`, answered from the type, or one the
/// object resolves.
enum Selected<'a> {
    Typename(&'a Positioned<Field>),
    Field(&'a Positioned<Field>),
}

/// `root`'s selected fields, resolved in one joined future.
async fn resolve_joined<T: ContainerType>(
    ctx: &ContextSelectionSet<'_>,
    root: &T,
) -> ServerResult<Value> {
    let mut selected = Vec::new();
    let plain = collect(ctx, ctx.item, root, &mut selected)?;
    if !plain {
        return resolve_container(ctx, root).await;
    }
    let contexts: Vec<_> = selected
        .iter()
        .filter_map(|selected| match selected {
            Selected::Field(field) => Some(ctx.with_field(field)),
            Selected::Typename(_) => None,
        })
        .collect();
    let mut resolved = futures::future::join_all(
        contexts
            .iter()
            .map(|field_context| root.resolve_field(field_context)),
    )
    .await
    .into_iter();
    let mut object = IndexMap::with_capacity(selected.len());
    for selected in &selected {
        match selected {
            Selected::Typename(field) => insert(
                &mut object,
                field.node.response_key().node.clone(),
                Value::String(root.introspection_type_name().into_owned()),
            ),
            Selected::Field(field) => match resolved.next() {
                Some(Ok(value)) => insert(
                    &mut object,
                    field.node.response_key().node.clone(),
                    value.unwrap_or_default(),
                ),
                Some(Err(error)) => ctx.add_error(error),
                None => unreachable!("one result per field resolved"),
            },
        }
    }
    Ok(if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    })
}

/// Appends the fields `selection_set` selects on `root`, expanding the
/// fragments that apply to it, as async-graphql's `Fields::add_set` does
/// for an object. `Ok(false)` when a field carries a directive (`@skip`
/// and `@include` are gone by now; anything else is a custom directive,
/// which only the stock path runs).
fn collect<'a, T: ContainerType>(
    ctx: &ContextSelectionSet<'a>,
    selection_set: &'a Positioned<async_graphql::parser::types::SelectionSet>,
    root: &T,
    selected: &mut Vec<Selected<'a>>,
) -> ServerResult<bool> {
    for selection in &selection_set.node.items {
        let (type_condition, fragment_set) = match &selection.node {
            Selection::Field(field) => {
                if !field.node.directives.is_empty() {
                    return Ok(false);
                }
                selected.push(if field.node.name.node == "__typename" {
                    Selected::Typename(field)
                } else {
                    Selected::Field(field)
                });
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(
                        format!(r#"Unknown fragment "{name}"."#),
                        Some(spread.pos),
                    ));
                };
                (
                    Some(&fragment.node.type_condition),
                    &fragment.node.selection_set,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment.node.type_condition.as_ref(),
                &fragment.node.selection_set,
            ),
        };
        let applies = match type_condition {
            None => true,
            Some(condition) => {
                let condition = condition.node.on.node.as_str();
                let concrete = root.introspection_type_name();
                concrete == condition
                    || T::type_name() == condition
                    || ctx
                        .schema_env
                        .registry
                        .implements
                        .get(&*concrete)
                        .is_some_and(|interfaces| interfaces.contains(condition))
            }
        };
        if applies && !collect(ctx, fragment_set, root, selected)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds `value` under `name`, merging it into what the same key already
/// holds (a field selected twice, e.g. directly and through a fragment,
/// with different subfields), as async-graphql does.
fn insert(object: &mut IndexMap<Name, Value>, name: Name, value: Value) {
    // One hash of the key either way (the common case is a new key).
    let existing = match object.entry(name) {
        Entry::Vacant(vacant) => {
            vacant.insert(value);
            return;
        }
        Entry::Occupied(occupied) => occupied.into_mut(),
    };
    match (existing, value) {
        (Value::Object(existing), Value::Object(more)) => {
            for (key, value) in more {
                insert(existing, key, value);
            }
        }
        (Value::List(existing), Value::List(more)) => {
            for (existing, value) in existing.iter_mut().zip(more) {
                if let (Value::Object(existing), Value::Object(more)) = (existing, value) {
                    for (key, value) in more {
                        insert(existing, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}
