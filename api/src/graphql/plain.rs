//! Resolution of data already in memory without async-graphql's per-field machinery.
//!
//! The executor gives every field of every object its own boxed future, context and task slot.
//! A page of 50 orders with customer, items, products and history is about 1,400 fields, and
//! that bookkeeping cost more than the page's SQL. Types whose fields are plain data implement
//! [`PlainObject`]; a list of them is then resolved in one synchronous walk over the selection.
//!
//! A type answers only the fields it knows to be plain. Anything that needs I/O or a permission
//! check (a customer's email, an order's available transitions) answers `None`, the walk gives
//! up, and the executor resolves the list as before — so the walk can never skip a check.
//! Values are built with async-graphql's own scalar conversions; a test compares every plain
//! field with what the executor answers for the same object.

use std::{borrow::Cow, sync::Mutex};

use async_graphql::{
    ContextSelectionSet, EnumType, Name, OutputType, Positioned, ScalarType, SelectionField,
    ServerResult, Value, indexmap::IndexMap, parser::types::Field, registry::Registry,
    resolver_utils::enum_value,
};

/// A selected field and, merged by response key, the fields selected under it.
pub struct Selected<'a> {
    key: Name,
    name: &'a str,
    children: Vec<Selected<'a>>,
}

impl<'a> Selected<'a> {
    /// The selection under `field`; fragments are expanded (async-graphql has already removed
    /// what `@skip`/`@include` exclude) and fields with the same response key merged.
    pub fn of(field: SelectionField<'a>) -> Self {
        let mut selected = Self {
            key: Name::new(field.alias().unwrap_or(field.name())),
            name: field.name(),
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

    /// The value of `field`, or `None` when it is not plain data.
    fn plain_field(&self, field: &Selected<'_>) -> Option<Value>;
}

impl<T: PlainObject> PlainObject for &T {
    const TYPE_NAME: &'static str = T::TYPE_NAME;

    fn plain_field(&self, field: &Selected<'_>) -> Option<Value> {
        T::plain_field(self, field)
    }
}

/// `value` resolved for the selection under `field`.
pub fn object<T: PlainObject>(value: &T, field: &Selected<'_>) -> Option<Value> {
    let mut fields = IndexMap::with_capacity(field.children.len());
    for child in &field.children {
        let resolved = if child.name == "__typename" {
            Value::String(T::TYPE_NAME.to_string())
        } else {
            value.plain_field(child)?
        };
        fields.insert(child.key.clone(), resolved);
    }
    Some(Value::Object(fields))
}

/// Each of `values` resolved for the selection under `field`.
pub fn list<T: PlainObject>(
    values: impl IntoIterator<Item = T>,
    field: &Selected<'_>,
) -> Option<Value> {
    values
        .into_iter()
        .map(|value| object(&value, field))
        .collect::<Option<Vec<_>>>()
        .map(Value::List)
}

/// A scalar, converted exactly as the executor converts it.
pub fn scalar<T: ScalarType>(value: &T) -> Value {
    value.to_value()
}

/// An optional scalar: `null` when absent.
pub fn optional<T: ScalarType>(value: Option<&T>) -> Value {
    value.map_or(Value::Null, ScalarType::to_value)
}

/// An enum value, converted exactly as the executor converts it.
pub fn enumeration<T: EnumType>(value: T) -> Value {
    enum_value(value)
}

/// Text, as the executor converts `&str`.
pub fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

/// Optional text: `null` when absent.
pub fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

/// A field's result, either resolved by the plain walk or left to the executor. Its schema
/// type is `T`'s, so the SDL does not change.
pub enum Prepared<T> {
    /// Resolved; taken once, when the executor asks for it.
    Resolved(Mutex<Option<Value>>),
    Executor(T),
}

impl<'a, T: PlainObject + Sync> Prepared<&'a [T]>
where
    &'a [T]: OutputType,
{
    /// `values` resolved by the plain walk when every selected field is plain, else by the
    /// executor.
    pub fn list(field: SelectionField<'_>, values: &'a [T]) -> Self {
        let resolved = list(values, &Selected::of(field));
        let path = if resolved.is_some() {
            "plain"
        } else {
            "executor"
        };
        metrics::counter!("graphql_plain_lists_total", "type" => T::TYPE_NAME, "path" => path)
            .increment(1);
        match resolved {
            Some(value) => Self::Resolved(Mutex::new(Some(value))),
            None => Self::Executor(values),
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
            Self::Resolved(value) => Ok(value
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or_default()),
            Self::Executor(inner) => inner.resolve(ctx, field).await,
        }
    }
}
