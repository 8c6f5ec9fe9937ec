//! Request guard: refuses costly documents before any resolver runs and gives every refusal
//! an `extensions.code`, so clients can tell a malformed query from an expensive one.
//!
//! async-graphql already enforces depth and complexity during validation; this adds the caps it
//! lacks (aliases, root fields) and codes its own errors, which come without one.
//!
//! `POST /graphql` runs [`Guard::prepare`] in the handler and hands async-graphql the parsed
//! document: an async-graphql extension would wrap every field resolution of every request,
//! which costs more than the rest of a typical query. The WebSocket schema, which only runs
//! subscriptions, uses the [`WebSocketGuard`] extension.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation},
    parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet},
};

use crate::configuration::GraphqlLimits;

/// `extensions.code` of a document that could not be parsed.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// `extensions.code` of a document that does not fit the schema.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// `extensions.code` of a document refused for its cost (depth, complexity, aliases, root fields).
pub const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// The checks every document passes before it runs.
#[derive(Clone)]
pub struct Guard {
    limits: GraphqlLimits,
    introspection: bool,
    checked: Arc<CheckedDocuments>,
}

impl Guard {
    pub fn new(limits: GraphqlLimits, introspection: bool) -> Self {
        Self {
            limits,
            introspection,
            checked: Arc::default(),
        }
    }

    /// Parses the request's query, checks its shape and keeps the parsed document on the
    /// request, so async-graphql does not parse it again. A front end sends the same few
    /// queries over and over: a document that passed once is kept, and copying it costs a
    /// fraction of parsing it again.
    pub fn prepare(&self, request: &mut Request) -> ServerResult<()> {
        if let Some(document) = self.checked.get(&request.query) {
            request.set_parsed_query(document);
            return Ok(());
        }
        let document = async_graphql::parser::parse_query(&request.query)
            .map_err(|error| with_code(ServerError::from(error), PARSE_FAILED))?;
        self.check_shape(&document)?;
        self.checked.keep(&request.query, &document);
        request.set_parsed_query(document);
        Ok(())
    }
}

/// Documents that were parsed and passed [`Guard::check_shape`], by query text. Bounded in
/// entries and in the length of each query, and emptied when full, so clients sending ever new
/// queries cost a parse each, as without it, and never unbounded memory.
#[derive(Default)]
struct CheckedDocuments(Mutex<HashMap<String, Arc<ExecutableDocument>>>);

impl CheckedDocuments {
    const MAX_ENTRIES: usize = 512;
    const MAX_QUERY_BYTES: usize = 16 * 1024;

    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let found = self.documents().get(query).cloned();
        found.map(|document| ExecutableDocument::clone(&document))
    }

    fn keep(&self, query: &str, document: &ExecutableDocument) {
        if query.len() > Self::MAX_QUERY_BYTES {
            return;
        }
        let mut documents = self.documents();
        if documents.len() >= Self::MAX_ENTRIES {
            documents.clear();
        }
        documents.insert(query.to_string(), Arc::new(document.clone()));
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecutableDocument>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Gives async-graphql's own request-level errors (validation, limits) their code.
pub fn code_request_error(error: ServerError) -> ServerError {
    let code = match error.message.as_str() {
        "Query is too complex." | "Query is nested too deep." => TOO_COMPLEX,
        message if message.starts_with("The recursion depth") => TOO_COMPLEX,
        _ => VALIDATION_FAILED,
    };
    with_code(error, code)
}

/// The guard as an extension of the WebSocket schema: every operation it sees arrived over the
/// WebSocket, so it also refuses anything but subscriptions.
pub struct WebSocketGuard(pub Guard);

impl ExtensionFactory for WebSocketGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension(self.0.clone()))
    }
}

struct GuardExtension(Guard);

#[async_trait::async_trait]
impl Extension for GuardExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|error| {
            // The parser's own nesting guard fires before validation does; it is a cost refusal.
            let code = if error.message.starts_with("The recursion depth") {
                TOO_COMPLEX
            } else {
                PARSE_FAILED
            };
            with_code(error, code)
        })?;
        self.0.check_shape(&document)?;
        only_subscriptions(&document)?;
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(code_request_error).collect())
    }
}

impl Guard {
    fn check_shape(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let aliases = count_aliases(document);
        if aliases > self.limits.max_aliases {
            return Err(too_complex(format!(
                "the query uses {aliases} aliases; at most {} are allowed",
                self.limits.max_aliases
            )));
        }
        for (_, operation) in document.operations.iter() {
            let mut root_fields = Vec::new();
            collect_fields(
                document,
                &operation.node.selection_set.node,
                &mut HashSet::new(),
                &mut root_fields,
            );
            // async-graphql answers disabled introspection with nulls; an explicit refusal
            // tells the client why.
            if !self.introspection
                && root_fields
                    .iter()
                    .any(|name| matches!(*name, "__schema" | "__type"))
            {
                return Err(with_code(
                    ServerError::new("introspection is disabled on this server", None),
                    "FORBIDDEN",
                ));
            }
            let root_fields = root_fields.len();
            if root_fields > self.limits.max_root_fields {
                return Err(too_complex(format!(
                    "the operation selects {root_fields} root fields; at most {} are allowed",
                    self.limits.max_root_fields
                )));
            }
        }
        Ok(())
    }
}

/// Queries and mutations go through `POST /graphql`, where rate limits and batching rules apply.
fn only_subscriptions(document: &ExecutableDocument) -> ServerResult<()> {
    let all_subscriptions = document
        .operations
        .iter()
        .all(|(_, operation)| operation.node.ty == OperationType::Subscription);
    if all_subscriptions {
        Ok(())
    } else {
        Err(with_code(
            ServerError::new(
                "only subscriptions run over the WebSocket; send queries and mutations to POST /graphql",
                None,
            ),
            "BAD_REQUEST",
        ))
    }
}

fn too_complex(message: String) -> ServerError {
    with_code(ServerError::new(message, None), TOO_COMPLEX)
}

/// Sets `extensions.code` unless the error already has one.
pub fn with_code(mut error: ServerError, code: &'static str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

fn count_aliases(document: &ExecutableDocument) -> usize {
    let in_operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| aliases_in(&operation.node.selection_set.node))
        .sum();
    let in_fragments: usize = document
        .fragments
        .values()
        .map(|fragment| aliases_in(&fragment.node.selection_set.node))
        .sum();
    in_operations + in_fragments
}

fn aliases_in(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases_in(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases_in(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Names of the fields selected at one level, looking through fragments; `seen` stops
/// fragment cycles, which validation rejects only after this runs.
fn collect_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    seen: &mut HashSet<&'a str>,
    names: &mut Vec<&'a str>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => names.push(field.node.name.node.as_str()),
            Selection::InlineFragment(fragment) => {
                collect_fields(document, &fragment.node.selection_set.node, seen, names)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(fragment) = document.fragments.get(name)
                    && seen.insert(name.as_str())
                {
                    collect_fields(document, &fragment.node.selection_set.node, seen, names);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::Request;

    use super::{CheckedDocuments, Guard, TOO_COMPLEX};
    use crate::configuration::GraphqlLimits;

    fn guard() -> Guard {
        Guard::new(
            GraphqlLimits {
                max_root_fields: 2,
                ..GraphqlLimits::default()
            },
            false,
        )
    }

    fn prepared(guard: &Guard, query: &str) -> Result<String, String> {
        let mut request = Request::new(query);
        match guard.prepare(&mut request) {
            Ok(()) => Ok(format!("{:?}", request.parsed_query().expect("parsed"))),
            Err(error) => Err(format!("{error:?}")),
        }
    }

    #[test]
    fn a_kept_document_is_the_document_parsed_and_a_refused_one_stays_refused() {
        let guard = guard();
        let query = "query Page($first: Int) { orders(first: $first) { edges { node { id } } } }";
        let parsed = prepared(&guard, query).expect("accepted");
        assert_eq!(guard.checked.documents().len(), 1);
        assert_eq!(prepared(&guard, query).expect("accepted again"), parsed);

        let too_wide = "{ a: apiVersion b: apiVersion c: apiVersion }";
        for _ in 0..2 {
            let refused = prepared(&guard, too_wide).expect_err("three root fields");
            assert!(refused.contains(TOO_COMPLEX), "{refused}");
        }
        assert!(prepared(&guard, "{ orders(").is_err());
        assert_eq!(guard.checked.documents().len(), 1, "refusals are not kept");
    }

    #[test]
    fn the_kept_documents_stay_bounded() {
        let guard = guard();
        for index in 0..=CheckedDocuments::MAX_ENTRIES {
            prepared(&guard, &format!("{{ apiVersion }} # {index}")).expect("accepted");
        }
        assert!(guard.checked.documents().len() <= CheckedDocuments::MAX_ENTRIES);
        let long = format!(
            "{{ apiVersion }} #{}",
            "x".repeat(CheckedDocuments::MAX_QUERY_BYTES)
        );
        let before = guard.checked.documents().len();
        prepared(&guard, &long).expect("accepted");
        assert_eq!(
            guard.checked.documents().len(),
            before,
            "long queries are not kept"
        );
    }
}
