//! What a parsed document must pass before async-graphql validates and runs
//! it: a depth limit that leaves introspection to its own rule, and a bound
//! on the document's size with every fragment spread expanded.
//!
//! Why not async-graphql's own depth limit: it counts introspection like any
//! query, and the introspection query every standard client sends
//! (graphql-js's `getIntrospectionQuery()`, used by GraphiQL, Apollo, Relay
//! and graphql-codegen) nests 15 deep, so any depth limit strict enough for
//! data queries refuses it. Here introspection subtrees (`__schema`,
//! `__type`) are measured apart, by the rule graphql-js itself ships
//! (`MaxIntrospectionDepthRule`): list-of-type fields (`fields`,
//! `interfaces`, `possibleTypes`, `inputFields`) nest at most two deep
//! (graphql-js refuses a third), which the standard query (one level)
//! passes and a query walking the schema graph over and over does not.
//!
//! Why the expanded-size bound: validation (depth, complexity) walks the
//! document with every fragment spread inlined, so ten fragments that each
//! spread the next one twice make a 60-byte-per-line document whose walk is
//! 2¹⁰ times longer. This module measures each fragment once (memoized) and
//! refuses a document whose expansion exceeds [`MAX_EXPANDED_SELECTIONS`]
//! before anything walks it inline.
//!
//! Every measure saturates: no document, however crafted, overflows one.

use std::collections::HashMap;

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use crate::error::ErrorCode;

/// Most selections (fields, counted once per place they land) a document may
/// expand to. A generous frontend page is a few hundred.
pub const MAX_EXPANDED_SELECTIONS: usize = 10_000;
/// Deepest nesting of `fields`, `interfaces`, `possibleTypes` and
/// `inputFields` inside an introspection query (graphql-js's
/// `MaxIntrospectionDepthRule` refuses the third level too).
pub const MAX_INTROSPECTION_LISTS: usize = 2;
/// Deepest nesting inside an introspection query. The standard query nests
/// 13 below `__schema` (a type reference unwrapped eight `ofType`s deep);
/// more only walks `ofType` chains that end in null.
pub const MAX_INTROSPECTION_DEPTH: usize = 24;

/// Deepest nesting of brackets (`{`, `[`, `(`) a query's text may have.
/// async-graphql's parser recurses once per level of a list or object value
/// without a limit of its own, and a stack overflow aborts the whole
/// process: about 320 nested `[` (600 bytes) did so on a 2 MiB stack. The
/// text is scanned for this before it is parsed. Selection sets nest at
/// most 64 deep in the parser anyway, so real documents stay far below.
pub const MAX_BRACKET_NESTING: usize = 128;

/// Checks the nesting of brackets in a query's text before it is parsed,
/// skipping strings, block strings and comments.
pub fn check_nesting(text: &str) -> Result<(), Refusal> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at += 3;
                while at < bytes.len() && !bytes[at..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped delimiter inside a block string.
                    at += if bytes[at..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                at += 2;
            }
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' && bytes[at] != b'\n' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_BRACKET_NESTING {
                    return Err(Refusal::NestedTooDeepToParse);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The limits a document is admitted under.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Deepest nesting of a data query (introspection excluded).
    pub max_depth: usize,
}

/// Why a document was refused; becomes a `BAD_USER_INPUT` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Data fields nest deeper than `limits.max_depth`.
    #[error("Query is nested too deep: depth {depth} exceeds the limit of {limit}")]
    TooDeep { depth: usize, limit: usize },
    /// Introspection walks the schema graph too deep.
    #[error(
        "Maximum introspection depth exceeded: `fields`, `interfaces`, `possibleTypes` and \
         `inputFields` nest at most {MAX_INTROSPECTION_LISTS} deep, and introspection at most \
         {MAX_INTROSPECTION_DEPTH}"
    )]
    IntrospectionTooDeep,
    /// Brackets nest deeper than the parser can safely follow.
    #[error("Query is nested too deep to parse: brackets nest at most {MAX_BRACKET_NESTING} deep")]
    NestedTooDeepToParse,
    /// The request carries no document (nor a persisted one's hash).
    #[error("the request has no query: send `query`, or a persisted query's hash")]
    NoQuery,
    /// Fragment spreads expand the document past the size bound.
    #[error(
        "Query is too large: its fragments expand to more than {MAX_EXPANDED_SELECTIONS} selections"
    )]
    TooLarge,
}

impl Refusal {
    /// The error clients see (`extensions.code = BAD_USER_INPUT`).
    pub fn into_server_error(self) -> ServerError {
        let mut error = ServerError::new(self.to_string(), None);
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", ErrorCode::BadUserInput.as_str());
        error.extensions = Some(extensions);
        error
    }
}

/// Checks `document` against `limits`. Cycles between fragments are left to
/// validation (which refuses them); here a cycle simply stops the walk.
pub fn check(document: &ExecutableDocument, limits: DocumentLimits) -> Result<(), Refusal> {
    let mut measurer = Measurer {
        document,
        memo: HashMap::new(),
    };
    for (_, operation) in document.operations.iter() {
        let measure = measurer.selection_set(&operation.node.selection_set.node, false);
        if measure.selections > MAX_EXPANDED_SELECTIONS {
            return Err(Refusal::TooLarge);
        }
        if measure.depth > limits.max_depth {
            return Err(Refusal::TooDeep {
                depth: measure.depth,
                limit: limits.max_depth,
            });
        }
        if measure.introspection_lists > MAX_INTROSPECTION_LISTS
            || measure.introspection_depth > MAX_INTROSPECTION_DEPTH
        {
            return Err(Refusal::IntrospectionTooDeep);
        }
    }
    Ok(())
}

/// The measures of one selection set, all saturating.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    /// Selections after expanding every spread.
    selections: usize,
    /// Outside introspection: the data depth (introspection subtrees count
    /// as 1, their root field). Inside: the depth below the introspection
    /// root.
    depth: usize,
    /// Outside introspection: the deepest list nesting of any introspection
    /// subtree below. Inside: this subtree's list nesting.
    introspection_lists: usize,
    /// Outside introspection: the deepest introspection subtree below.
    introspection_depth: usize,
}

impl Measure {
    fn max(self, other: Measure) -> Measure {
        Measure {
            selections: self.selections.saturating_add(other.selections),
            depth: self.depth.max(other.depth),
            introspection_lists: self.introspection_lists.max(other.introspection_lists),
            introspection_depth: self.introspection_depth.max(other.introspection_depth),
        }
    }
}

/// Walks a document, measuring each (fragment, inside introspection) once.
struct Measurer<'a> {
    document: &'a ExecutableDocument,
    /// `None` while a fragment is being measured: meeting it again is a cycle.
    memo: HashMap<(&'a str, bool), Option<Measure>>,
}

const INTROSPECTION_ROOTS: [&str; 2] = ["__schema", "__type"];
const INTROSPECTION_LISTS: [&str; 4] = ["fields", "interfaces", "possibleTypes", "inputFields"];

impl<'a> Measurer<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, inside_introspection: bool) -> Measure {
        let mut total = Measure::default();
        for selection in &set.items {
            let measure = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let enters = !inside_introspection && INTROSPECTION_ROOTS.contains(&name);
                    let children = self
                        .selection_set(&field.selection_set.node, inside_introspection || enters);
                    let selections = children.selections.saturating_add(1);
                    if enters {
                        Measure {
                            selections,
                            depth: 1,
                            introspection_lists: children.introspection_lists,
                            introspection_depth: children.depth.saturating_add(1),
                        }
                    } else if inside_introspection {
                        let is_list = INTROSPECTION_LISTS.contains(&name);
                        Measure {
                            selections,
                            depth: children.depth.saturating_add(1),
                            introspection_lists: children.introspection_lists
                                + usize::from(is_list),
                            introspection_depth: 0,
                        }
                    } else {
                        Measure {
                            selections,
                            depth: children.depth.saturating_add(1),
                            ..children
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node, inside_introspection)
                }
                Selection::FragmentSpread(spread) => self.fragment(
                    spread.node.fragment_name.node.as_str(),
                    inside_introspection,
                ),
            };
            total = total.max(measure);
        }
        total
    }

    fn fragment(&mut self, name: &'a str, inside_introspection: bool) -> Measure {
        let key = (name, inside_introspection);
        match self.memo.get(&key) {
            Some(Some(measure)) => return *measure,
            // A cycle: validation refuses the document; stop here.
            Some(None) => return Measure::default(),
            None => {}
        }
        let Some((name, definition)) = self.document.fragments.get_key_value(name) else {
            // Unknown fragment: validation names it.
            return Measure::default();
        };
        let key = (name.as_str(), inside_introspection);
        self.memo.insert(key, None);
        let measure = self.selection_set(&definition.node.selection_set.node, inside_introspection);
        self.memo.insert(key, Some(measure));
        measure
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    const LIMITS: DocumentLimits = DocumentLimits { max_depth: 12 };

    fn check_text(query: &str) -> Result<(), Refusal> {
        check(&parse_query(query).expect("parses"), LIMITS)
    }

    /// graphql-js 16's `getIntrospectionQuery()` with every option on, as
    /// the standard clients send it.
    pub(crate) const GRAPHQL_JS_INTROSPECTION: &str =
        include_str!("../tests/data/graphql-js-introspection.graphql");

    #[test]
    fn the_standard_introspection_query_is_admitted() {
        assert_eq!(check_text(GRAPHQL_JS_INTROSPECTION), Ok(()));
    }

    #[test]
    fn introspection_walking_the_schema_graph_is_refused() {
        let walk = "{ __schema { types { fields { type { fields { type { fields { type { \
                    fields { name } } } } } } } } } }";
        assert_eq!(check_text(walk), Err(Refusal::IntrospectionTooDeep));
        let through_fragments = "{ __schema { types { ...F } } } \
            fragment F on __Type { fields { type { ...G } } } \
            fragment G on __Type { interfaces { ...H } } \
            fragment H on __Type { possibleTypes { name } }";
        assert_eq!(
            check_text(through_fragments),
            Err(Refusal::IntrospectionTooDeep)
        );
        let of_type_chain = format!(
            "{{ __type(name: \"User\") {{ {} name {} }} }}",
            "ofType {".repeat(30),
            "}".repeat(30)
        );
        assert_eq!(
            check_text(&of_type_chain),
            Err(Refusal::IntrospectionTooDeep)
        );
    }

    #[test]
    fn data_depth_counts_fragments_and_ignores_introspection() {
        // Four levels per repeat, plus the `id` leaf.
        let nested = |repeats: usize| {
            format!(
                "{} id {}",
                "viewer { followers { edges { node { ".repeat(repeats),
                "} } } }".repeat(repeats)
            )
        };
        assert_eq!(check_text(&format!("{{ {} }}", nested(2))), Ok(()));
        assert_eq!(
            check_text(&format!("{{ {} }}", nested(4))),
            Err(Refusal::TooDeep {
                depth: 17,
                limit: 12
            })
        );
        let via_fragment = "{ viewer { ...A } } fragment A on User { followers { edges { node { \
            followers { edges { node { followers { edges { node { followers { edges { node { id \
            } } } } } } } } } } } } }";
        assert_eq!(
            check_text(via_fragment),
            Err(Refusal::TooDeep {
                depth: 14,
                limit: 12
            })
        );
        // Introspection beside a data query does not add to its depth.
        let beside = format!("{{ __schema {{ types {{ name }} }} {} }}", nested(2));
        assert_eq!(check_text(&beside), Ok(()));
    }

    #[test]
    fn exponential_fragment_expansion_is_refused_without_expanding_it() {
        let mut query = String::from("{ viewer { ...F0 } }\n");
        for level in 0..40 {
            query.push_str(&format!(
                "fragment F{level} on User {{ a: followers {{ ...F{next} }} b: following {{ ...F{next} }} }}\n",
                next = level + 1
            ));
        }
        query.push_str("fragment F40 on UserConnection { edges { cursor } }\n");
        assert_eq!(check_text(&query), Err(Refusal::TooLarge));
    }

    #[test]
    fn bracket_nesting_is_bounded_outside_strings_and_comments() {
        let nested = |open: &str, close: &str, depth: usize| {
            format!(
                "{{ user(id: {}1{}) {{ id }} }}",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        // The query's own `{ user(` adds two levels.
        let fits = MAX_BRACKET_NESTING - 2;
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            assert_eq!(check_nesting(&nested(open, close, fits)), Ok(()));
            assert_eq!(
                check_nesting(&nested(open, close, fits + 1)),
                Err(Refusal::NestedTooDeepToParse)
            );
            assert_eq!(
                check_nesting(&nested(open, close, 100_000)),
                Err(Refusal::NestedTooDeepToParse)
            );
        }
        let deep = "[".repeat(1_000);
        for harmless in [
            format!("{{ a(s: \"{deep}\") }}"),
            format!("{{ a(s: \"\"\"{deep} \\\"\"\" {deep}\"\"\") }}"),
            format!("{{ a # {deep}\n }}"),
            format!("{{ a(s: \"\\\" {deep}\") }}"),
        ] {
            assert_eq!(check_nesting(&harmless), Ok(()), "{harmless}");
        }
    }

    #[test]
    fn fragment_cycles_end_the_walk() {
        let cycle = "{ viewer { ...A } } fragment A on User { ...B } fragment B on User { ...A }";
        assert_eq!(check_text(cycle), Ok(()));
    }
}
