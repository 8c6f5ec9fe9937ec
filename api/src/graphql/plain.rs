//! Resolution of data already in memory without async-graphql's per-field machinery.
//!
//! The executor gives every field of every object its own boxed future, context and task slot,
//! then builds the answer as a tree of values (a map and a string allocation per object and
//! per text) that is serialised afterwards. A page of 50 orders with customer, items, products
//! and history is about 1,400 fields, and that bookkeeping cost more than the page's SQL.
//! Types whose fields are plain data implement [`PlainObject`]; a list of them is then written
//! as JSON in one synchronous walk over the selection.
//!
//! A type answers only the fields it knows to be plain. Anything that needs I/O or a permission
//! check (a customer's email, an order's available transitions) answers `None`, the walk gives
//! up, and the executor resolves the list as before; so does a field given arguments, which the
//! walk does not read. Scalars are converted by async-graphql's own `ScalarType`s.
//!
//! Each `PlainObject` impl is a second copy of its type's resolvers, kept beside them. What
//! keeps the copies equal is the parity test in `tests/api/plain.rs`: it reads the schema,
//! and for every field reachable from the one list answered this way (`orders { edges }`,
//! through [`Prepared::list`]) compares the walk with the executor as every built-in role and
//! as an API key with a narrow role. A new field, a guard added to a field the walk answers,
//! or a role that loses a permission shows there as a difference. Another list answered this
//! way needs its starting point added to that test.
//!
//! The written JSON reaches the response through [`PreparedJson`]: the field's value is a
//! placeholder naming a random token, and the HTTP handler puts the JSON in the placeholder's
//! place once the response is serialised. Without that handler (a WebSocket operation) the JSON
//! is parsed back into a value.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex, PoisonError},
};

use async_graphql::{
    ContextSelectionSet, EnumType, OutputType, Positioned, ScalarType, SelectionField, ServerError,
    ServerResult, Value, parser::types::Field, registry::Registry, resolver_utils::enum_value,
};
use serde::Serialize;
use uuid::Uuid;

/// A selected field and, merged by response key, the fields selected under it.
pub struct Selected<'a> {
    key: &'a str,
    name: &'a str,
    /// Whether the request gives the field arguments, which the walk does not read.
    with_arguments: bool,
    children: Vec<Selected<'a>>,
}

impl<'a> Selected<'a> {
    /// The selection under `field`; fragments are expanded (async-graphql has already removed
    /// what `@skip`/`@include` exclude) and fields with the same response key merged.
    pub fn of(field: SelectionField<'a>) -> Self {
        let mut selected = Self {
            key: field.alias().unwrap_or(field.name()),
            name: field.name(),
            // Arguments that cannot be read (a missing variable) count as given.
            with_arguments: field
                .arguments()
                .map_or(true, |arguments| !arguments.is_empty()),
            children: Vec::new(),
        };
        for child in field.selection_set() {
            selected.add(child);
        }
        selected
    }

    fn add(&mut self, field: SelectionField<'a>) {
        let key = field.alias().unwrap_or(field.name());
        match self.children.iter_mut().find(|child| child.key == key) {
            Some(existing) => {
                for grandchild in field.selection_set() {
                    existing.add(grandchild);
                }
            }
            None => self.children.push(Self::of(field)),
        }
    }

    /// The field's name in the schema (not its alias).
    pub fn name(&self) -> &str {
        self.name
    }
}

/// An object whose fields can be answered from memory.
pub trait PlainObject {
    /// The GraphQL type name, for `__typename`.
    const TYPE_NAME: &'static str;

    /// Writes the value of `field` to `json`, or answers `None` when it is not plain data.
    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()>;
}

impl<T: PlainObject> PlainObject for &T {
    const TYPE_NAME: &'static str = T::TYPE_NAME;

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        T::plain_field(self, field, json)
    }
}

/// JSON being written by the plain walk.
#[derive(Default)]
pub struct Json(Vec<u8>);

impl Json {
    /// `value` resolved for the selection under `field`.
    pub fn object<T: PlainObject>(&mut self, value: &T, field: &Selected<'_>) -> Option<()> {
        self.0.push(b'{');
        for (index, child) in field.children.iter().enumerate() {
            if index > 0 {
                self.0.push(b',');
            }
            self.text(child.key);
            self.0.push(b':');
            if child.name == "__typename" {
                self.text(T::TYPE_NAME);
            } else if child.with_arguments {
                // The walk answers a field as it is without arguments; given some, the field
                // is the executor's.
                return None;
            } else {
                value.plain_field(child, self)?;
            }
        }
        self.0.push(b'}');
        Some(())
    }

    /// Each of `values` resolved for the selection under `field`.
    pub fn list<T: PlainObject>(
        &mut self,
        values: impl IntoIterator<Item = T>,
        field: &Selected<'_>,
    ) -> Option<()> {
        self.0.push(b'[');
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.0.push(b',');
            }
            self.object(&value, field)?;
        }
        self.0.push(b']');
        Some(())
    }

    /// A scalar, converted exactly as the executor converts it.
    pub fn scalar<T: ScalarType>(&mut self, value: &T) {
        self.serialized(&value.to_value());
    }

    /// An optional scalar: `null` when absent.
    pub fn optional<T: ScalarType>(&mut self, value: Option<&T>) {
        match value {
            Some(value) => self.scalar(value),
            None => self.null(),
        }
    }

    /// An enum value, converted exactly as the executor converts it.
    pub fn enumeration<T: EnumType>(&mut self, value: T) {
        self.serialized(&enum_value(value));
    }

    /// Text, as the executor converts `&str`.
    pub fn text(&mut self, value: &str) {
        self.serialized(value);
    }

    /// Optional text: `null` when absent.
    pub fn optional_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    fn null(&mut self) {
        self.0.extend_from_slice(b"null");
    }

    fn serialized<T: Serialize + ?Sized>(&mut self, value: &T) {
        serde_json::to_writer(&mut self.0, value).expect("writing JSON to memory cannot fail");
    }

    fn into_string(self) -> String {
        String::from_utf8(self.0).expect("serde_json writes UTF-8")
    }
}

/// A field's result, either written by the plain walk or left to the executor. Its schema
/// type is `T`'s, so the SDL does not change.
pub enum Prepared<T> {
    /// Written; handed over once, when the executor asks for it.
    Written(Mutex<Option<String>>),
    Executor(T),
}

impl<'a, T: PlainObject + Sync> Prepared<&'a [T]>
where
    &'a [T]: OutputType,
{
    /// `values` written by the plain walk when every selected field is plain, else resolved
    /// by the executor.
    pub fn list(field: SelectionField<'_>, values: &'a [T]) -> Self {
        // An order with customer, three items and three status changes is about 500 bytes;
        // sized up front, the buffer is not copied as it grows.
        let mut json = Json(Vec::with_capacity(values.len() * 512));
        let written = json.list(values, &Selected::of(field)).is_some();
        let path = if written { "plain" } else { "executor" };
        metrics::counter!("graphql_plain_lists_total", "type" => T::TYPE_NAME, "path" => path)
            .increment(1);
        if written {
            Self::Written(Mutex::new(Some(json.into_string())))
        } else {
            Self::Executor(values)
        }
    }
}

impl<T: OutputType> OutputType for Prepared<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self {
            Self::Written(json) => {
                let internal = |message: String| ServerError::new(message, Some(field.pos));
                let json = json
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .ok_or_else(|| internal("a written list was resolved twice".into()))?;
                match ctx.data_opt::<Arc<PreparedJson>>() {
                    Some(prepared) => Ok(Value::String(prepared.placeholder(json))),
                    None => serde_json::from_str(&json).map_err(|error| {
                        internal(format!("the plain walk wrote bad JSON: {error}"))
                    }),
                }
            }
            Self::Executor(inner) => inner.resolve(ctx, field).await,
        }
    }
}

/// The JSON the plain walk wrote during one HTTP request, each behind a placeholder in the
/// response. A placeholder carries a random token drawn for this request, so no text a client
/// stored (a customer's name, a note) can pass for one.
pub struct PreparedJson {
    token: Uuid,
    written: Mutex<Vec<String>>,
}

impl Default for PreparedJson {
    fn default() -> Self {
        Self {
            token: Uuid::new_v4(),
            written: Mutex::default(),
        }
    }
}

impl PreparedJson {
    fn placeholder(&self, json: String) -> String {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.push(json);
        Self::placeholder_text(self.token, written.len() - 1)
    }

    fn placeholder_text(token: Uuid, index: usize) -> String {
        format!("plain-json:{token}:{index}")
    }

    /// `response`, a serialised GraphQL response, with every placeholder it still holds
    /// replaced by its JSON. A placeholder can be missing (a sibling's error nulled its
    /// parent); its JSON is then dropped.
    pub fn fill(&self, mut response: Vec<u8>) -> Vec<u8> {
        let written =
            std::mem::take(&mut *self.written.lock().unwrap_or_else(PoisonError::into_inner));
        for (index, json) in written.into_iter().enumerate() {
            let quoted = format!("\"{}\"", Self::placeholder_text(self.token, index));
            let Some(at) = find(&response, quoted.as_bytes()) else {
                continue;
            };
            response.splice(at..at + quoted.len(), json.into_bytes());
        }
        response
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Request, Schema};
    use uuid::Uuid;

    use super::{Json, PlainObject, Prepared, PreparedJson, Selected};

    struct Item(i32);

    #[Object]
    impl Item {
        async fn number(&self, times: Option<i32>) -> i32 {
            self.0 * times.unwrap_or(1)
        }
        async fn label(&self) -> String {
            format!("item {}", self.0)
        }
    }

    /// `label` is left to the executor, as a field needing I/O would be.
    impl PlainObject for Item {
        const TYPE_NAME: &'static str = "Item";

        fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
            match field.name() {
                "number" => json.scalar(&self.0),
                _ => return None,
            }
            Some(())
        }
    }

    struct Query(Vec<Item>);

    #[Object]
    impl Query {
        async fn items(&self, ctx: &Context<'_>) -> Prepared<&[Item]> {
            Prepared::list(ctx.field(), &self.0)
        }
    }

    /// The response as a client gets it: through the HTTP handler's placeholders when `over_http`.
    async fn answer(query: &str, over_http: bool) -> serde_json::Value {
        let schema = Schema::new(
            Query(vec![Item(1), Item(2)]),
            EmptyMutation,
            EmptySubscription,
        );
        let prepared = Arc::new(PreparedJson::default());
        let mut request = Request::new(query);
        if over_http {
            request = request.data(prepared.clone());
        }
        let response = serde_json::to_vec(&schema.execute(request).await).expect("serialises");
        serde_json::from_slice(&prepared.fill(response)).expect("JSON")
    }

    #[tokio::test]
    async fn a_written_list_answers_what_the_executor_answers_with_or_without_placeholders() {
        let plain = "{ items { n: number number __typename } }";
        let expected = serde_json::json!({ "data": { "items": [
            { "n": 1, "number": 1, "__typename": "Item" },
            { "n": 2, "number": 2, "__typename": "Item" },
        ] } });
        assert_eq!(answer(plain, true).await, expected);
        assert_eq!(answer(plain, false).await, expected);

        let mixed = answer("{ items { number label } }", true).await;
        assert_eq!(
            mixed["data"]["items"][1],
            serde_json::json!({ "number": 2, "label": "item 2" })
        );
    }

    #[tokio::test]
    async fn a_field_given_arguments_is_left_to_the_executor() {
        let tripled = answer("{ items { number(times: 3) } }", true).await;
        assert_eq!(
            tripled["data"]["items"],
            serde_json::json!([{ "number": 3 }, { "number": 6 }])
        );
    }

    #[test]
    fn placeholders_are_filled_only_with_this_requests_token() {
        let prepared = PreparedJson::default();
        let page = prepared.placeholder(r#"[{"name":"Ana"}]"#.to_string());
        let lost = prepared.placeholder("[1]".to_string());
        let forged = PreparedJson::placeholder_text(Uuid::new_v4(), 0);
        let response = serde_json::to_vec(&serde_json::json!({
            "data": { "orders": { "edges": page }, "note": forged }
        }))
        .expect("serialises");
        assert!(!String::from_utf8_lossy(&response).contains(&lost));

        let filled: serde_json::Value =
            serde_json::from_slice(&prepared.fill(response)).expect("still JSON");
        assert_eq!(filled["data"]["orders"]["edges"][0]["name"], "Ana");
        assert_eq!(
            filled["data"]["note"],
            forged.as_str(),
            "another request's token"
        );
    }
}
