//! Orders: creation, transitions along the workflow, and the filtered, paginated list.
//! Nested fields (customer, items, products, history, workflow) go through the request's
//! loader, so a page costs the same few statements whatever its size.

use std::{hash::Hash, sync::Arc};

use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SimpleObject, dataloader::Loader,
};
use chrono::{DateTime, Utc};
use entity::{order, order_item, order_status_history};

use super::{
    catalog::Product,
    context::{actor, loaders, parse_id, require, state},
    customers::Customer,
    identity::User,
    loaders::{
        CustomerKey, HistoryOfOrder, ItemsOfOrder, LoadError, PaymentsOfOrder, ProductKey,
        TenantLoader, UserKey, WorkflowKey,
    },
    money::Money,
    pagination::{PageInfo, decode_cursor, encode_cursor, page_size},
    payments::{OrderBalance, OrderPaymentStatus, Payment},
    plain::{Json, PlainObject, Prepared, Selected},
    workflows::{Workflow, WorkflowTransition},
};
use crate::{
    error::ApiError,
    services::orders::{
        self, NewOrder, OrderFilter as Filter, OrderSort, PageDetails, PageParts, PageRequest,
        Position, TransitionRequest,
    },
};

/// An order of a customer, moving through its workflow. In a list page it carries the
/// page's details, fetched together; alone it resolves them through the request's loader.
pub struct Order(pub order::Model, Option<Arc<PageDetails>>);

impl Order {
    pub fn single(row: order::Model) -> Self {
        Self(row, None)
    }

    /// The page's details when they include what `part` names.
    fn page_with(&self, part: impl Fn(&PageParts) -> bool) -> Option<&PageDetails> {
        self.1.as_deref().filter(|page| part(&page.parts))
    }

    async fn payment_rows(&self, ctx: &Context<'_>) -> Result<Vec<entity::payment::Model>> {
        Ok(loaders(ctx)?
            .load_one(PaymentsOfOrder(self.0.id))
            .await
            .map_err(ApiError::from)?
            .unwrap_or_default())
    }

    async fn balance(&self, ctx: &Context<'_>) -> Result<OrderBalance> {
        let balance =
            crate::services::payments::order_balance(&self.0, &self.payment_rows(ctx).await?)?;
        Ok(OrderBalance {
            status: balance.status,
            paid: balance.paid,
            due: balance.due,
            currency: self.0.currency.clone(),
        })
    }
}

/// A nested part of an order: from its list page when the page fetched that part, otherwise
/// through the request's loader.
async fn page_or_loader<K, V>(
    ctx: &Context<'_>,
    page: Option<&PageDetails>,
    on_page: impl FnOnce(&PageDetails) -> Option<V>,
    key: K,
) -> Result<Option<V>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    TenantLoader: Loader<K, Value = V, Error = LoadError>,
{
    Ok(match page {
        Some(page) => on_page(page),
        None => loaders(ctx)?.load_one(key).await.map_err(ApiError::from)?,
    })
}

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Sequential within the company: 1, 2, 3…
    async fn number(&self) -> i64 {
        self.0.number
    }
    /// A state key of the order's workflow.
    async fn status(&self) -> &str {
        &self.0.status
    }
    /// Grows with every change; pass it as `expectedVersion` to refuse stale transitions.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn notes(&self) -> Option<&str> {
        self.0.notes.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Computed by the server from the items.
    async fn total(&self) -> Result<Money> {
        Ok(Money::of(self.0.total_minor, &self.0.currency)?)
    }
    async fn customer(&self, ctx: &Context<'_>) -> Result<Customer> {
        let customer = page_or_loader(
            ctx,
            self.page_with(|parts| parts.customers),
            |page| page.customers.get(&self.0.customer_id).cloned(),
            CustomerKey(self.0.customer_id),
        )
        .await?;
        Ok(Customer(customer.ok_or(ApiError::NotFound("customer"))?))
    }
    async fn items(&self, ctx: &Context<'_>) -> Result<Vec<OrderItem>> {
        let items = page_or_loader(
            ctx,
            self.page_with(|parts| parts.items),
            |page| page.items.get(&self.0.id).cloned(),
            ItemsOfOrder(self.0.id),
        )
        .await?;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(|item| OrderItem {
                item,
                currency: self.0.currency.clone(),
                page: self.1.clone(),
            })
            .collect())
    }
    /// Every status the order went through, oldest first.
    async fn history(&self, ctx: &Context<'_>) -> Result<Vec<StatusChange>> {
        let history = page_or_loader(
            ctx,
            self.page_with(|parts| parts.history),
            |page| page.history.get(&self.0.id).cloned(),
            HistoryOfOrder(self.0.id),
        )
        .await?;
        Ok(history
            .unwrap_or_default()
            .into_iter()
            .map(StatusChange)
            .collect())
    }
    /// The order's payments, oldest first (`payments:read`).
    async fn payments(&self, ctx: &Context<'_>) -> Result<Vec<Payment>> {
        require(ctx, "payments", "read").await?;
        Ok(self
            .payment_rows(ctx)
            .await?
            .into_iter()
            .map(Payment)
            .collect())
    }
    /// What the payments add up to: unpaid, partially paid, paid, overpaid or refunded.
    async fn payment_status(&self, ctx: &Context<'_>) -> Result<OrderPaymentStatus> {
        Ok(self.balance(ctx).await?.status())
    }
    /// Collected minus refunded.
    async fn amount_paid(&self, ctx: &Context<'_>) -> Result<Money> {
        self.balance(ctx).await?.paid()
    }
    /// What the customer still owes; zero once paid or overpaid.
    async fn amount_due(&self, ctx: &Context<'_>) -> Result<Money> {
        self.balance(ctx).await?.due()
    }
    /// The workflow version the order started with.
    async fn workflow(&self, ctx: &Context<'_>) -> Result<Workflow> {
        let workflow = loaders(ctx)?
            .load_one(WorkflowKey(self.0.workflow_id))
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("workflow"))?;
        Ok(Workflow(workflow))
    }
    /// The moves from the current status that the current actor may make.
    async fn available_transitions(&self, ctx: &Context<'_>) -> Result<Vec<WorkflowTransition>> {
        let actor = actor(ctx)?;
        let workflow = loaders(ctx)?
            .load_one(WorkflowKey(self.0.workflow_id))
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("workflow"))?;
        Ok(
            orders::available_transitions(actor, &workflow, &self.0.status)
                .map(Into::into)
                .collect(),
        )
    }
}

impl PlainObject for Order {
    const TYPE_NAME: &'static str = "Order";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        let order = &self.0;
        match field.name() {
            "id" => json.scalar(&ID(order.id.to_string())),
            "number" => json.scalar(&order.number),
            "status" => json.text(&order.status),
            "version" => json.scalar(&order.version),
            "notes" => json.optional_text(order.notes.as_deref()),
            "createdAt" => json.scalar(&order.created_at),
            "updatedAt" => json.scalar(&order.updated_at),
            "total" => json.object(&Money::of(order.total_minor, &order.currency).ok()?, field)?,
            "customer" => {
                let page = self.page_with(|parts| parts.customers)?;
                json.object(page.customers.get(&order.customer_id)?, field)?;
            }
            "items" => {
                let page = self.page_with(|parts| parts.items)?;
                let items = page.items.get(&order.id).map(Vec::as_slice);
                json.list(
                    items.unwrap_or_default().iter().map(|item| ItemOnPage {
                        item,
                        currency: &order.currency,
                        page,
                    }),
                    field,
                )?;
            }
            "history" => {
                let page = self.page_with(|parts| parts.history)?;
                let history = page.history.get(&order.id).map(Vec::as_slice);
                json.list(history.unwrap_or_default(), field)?;
            }
            _ => return None,
        }
        Some(())
    }
}

/// An item of an order on a list page, answered from the page's details.
struct ItemOnPage<'a> {
    item: &'a order_item::Model,
    currency: &'a str,
    page: &'a PageDetails,
}

impl PlainObject for ItemOnPage<'_> {
    const TYPE_NAME: &'static str = "OrderItem";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        let item = self.item;
        let money = |minor| Money::of(minor, self.currency).ok();
        match field.name() {
            "quantity" => json.scalar(&item.quantity),
            "unitPrice" => json.object(&money(item.unit_price_minor)?, field)?,
            "lineTotal" => json.object(&money(item.line_total_minor)?, field)?,
            "product" if self.page.parts.products => {
                json.object(self.page.products.get(&item.product_id)?, field)?;
            }
            _ => return None,
        }
        Some(())
    }
}

impl PlainObject for order_status_history::Model {
    const TYPE_NAME: &'static str = "StatusChange";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        match field.name() {
            "from" => json.optional_text(self.from_status.as_deref()),
            "to" => json.text(&self.to_status),
            "apiKeyId" => {
                json.optional(self.actor_api_key_id.map(|id| ID(id.to_string())).as_ref());
            }
            "comment" => json.optional_text(self.comment.as_deref()),
            "at" => json.scalar(&self.created_at),
            _ => return None,
        }
        Some(())
    }
}

/// A line of an order, priced when the order was made.
pub struct OrderItem {
    item: order_item::Model,
    currency: String,
    page: Option<Arc<PageDetails>>,
}

#[Object]
impl OrderItem {
    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        let product = page_or_loader(
            ctx,
            self.page.as_deref().filter(|page| page.parts.products),
            |page| page.products.get(&self.item.product_id).cloned(),
            ProductKey(self.item.product_id),
        )
        .await?;
        Ok(Product(product.ok_or(ApiError::NotFound("product"))?))
    }
    async fn quantity(&self) -> i32 {
        self.item.quantity
    }
    async fn unit_price(&self) -> Result<Money> {
        Ok(Money::of(self.item.unit_price_minor, &self.currency)?)
    }
    async fn line_total(&self) -> Result<Money> {
        Ok(Money::of(self.item.line_total_minor, &self.currency)?)
    }
}

/// One step of an order's history.
pub struct StatusChange(order_status_history::Model);

#[Object]
impl StatusChange {
    /// Null for the order's creation.
    async fn from(&self) -> Option<&str> {
        self.0.from_status.as_deref()
    }
    async fn to(&self) -> &str {
        &self.0.to_status
    }
    /// The person who made the change; null for an API key, someone no longer a member, or a
    /// viewer without `members:read`.
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(user_id) = self.0.actor_user_id else {
            return Ok(None);
        };
        if require(ctx, "members", "read").await.is_err() {
            return Ok(None);
        }
        let user = loaders(ctx)?
            .load_one(UserKey(user_id))
            .await
            .map_err(ApiError::from)?;
        Ok(user.map(User))
    }
    /// The API key that made the change, when one did.
    async fn api_key_id(&self) -> Option<ID> {
        self.0.actor_api_key_id.map(|id| ID(id.to_string()))
    }
    async fn comment(&self) -> Option<&str> {
        self.0.comment.as_deref()
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct OrderItemInput {
    product_id: ID,
    quantity: i32,
}

#[derive(InputObject)]
pub struct CreateOrderInput {
    customer_id: ID,
    items: Vec<OrderItemInput>,
    notes: Option<String>,
}

#[derive(InputObject)]
pub struct TransitionOrderInput {
    order_id: ID,
    /// A state key of the order's workflow.
    to: String,
    comment: Option<String>,
    /// When given, the move is refused with `CONFLICT` unless the order is still at this version.
    expected_version: Option<i32>,
}

#[derive(InputObject, Default)]
pub struct OrderFilter {
    /// Any of these statuses.
    status: Option<Vec<String>>,
    customer_id: Option<ID>,
    /// Created at or after.
    created_from: Option<DateTime<Utc>>,
    /// Created before.
    created_to: Option<DateTime<Utc>>,
    /// An order number, or text found in the customer's name or the notes.
    search: Option<String>,
}

impl TryFrom<OrderFilter> for Filter {
    type Error = ApiError;

    fn try_from(input: OrderFilter) -> Result<Self, ApiError> {
        Ok(Self {
            statuses: input.status.unwrap_or_default(),
            customer_id: input
                .customer_id
                .as_ref()
                .map(|id| parse_id("filter.customerId", id))
                .transpose()?,
            created_from: input.created_from,
            created_to: input.created_to,
            search: input.search,
        })
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    NewestFirst,
    OldestFirst,
    TotalDesc,
    TotalAsc,
}

impl From<OrderBy> for OrderSort {
    fn from(order_by: OrderBy) -> Self {
        match order_by {
            OrderBy::NewestFirst => Self::NewestFirst,
            OrderBy::OldestFirst => Self::OldestFirst,
            OrderBy::TotalDesc => Self::TotalDesc,
            OrderBy::TotalAsc => Self::TotalAsc,
        }
    }
}

fn cursor_of(order: &order::Model) -> String {
    encode_cursor(&format!("{}:{}", order.number, order.total_minor))
}

fn parse_position(cursor: &str) -> Result<Position, ApiError> {
    let raw = decode_cursor("after", cursor)?;
    let mut parts = raw.split(':').map(str::parse::<i64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(number)), Some(Ok(total_minor)), None) => Ok(Position {
            number,
            total_minor,
        }),
        _ => Err(ApiError::validation(
            "after",
            "this cursor did not come from this API",
        )),
    }
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    cursor: String,
    node: Order,
}

impl PlainObject for OrderEdge {
    const TYPE_NAME: &'static str = "OrderEdge";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        match field.name() {
            "cursor" => json.text(&self.cursor),
            "node" => json.object(&self.node, field)?,
            _ => return None,
        }
        Some(())
    }
}

/// A page of orders.
pub struct OrderConnection {
    edges: Vec<OrderEdge>,
    page_info: PageInfo,
    filter: Filter,
}

#[Object]
impl OrderConnection {
    async fn edges(&self, ctx: &Context<'_>) -> Prepared<&[OrderEdge]> {
        Prepared::list(ctx.field(), &self.edges)
    }
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// Orders matching the filter, on every page (counted only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(orders::count(state(ctx)?, actor(ctx)?, &self.filter).await?)
    }
}

/// The nested parts the request selects under `edges { node { … } }`.
fn parts_wanted(ctx: &Context<'_>) -> PageParts {
    let node = ctx.look_ahead().field("edges").field("node");
    let items = node.field("items");
    PageParts {
        customers: node.field("customer").exists(),
        items: items.exists(),
        products: items.field("product").exists(),
        history: node.field("history").exists(),
    }
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// The company's orders (`orders:read`), newest first unless `orderBy` says otherwise.
    /// `first` is capped at 100.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<OrderFilter>,
        #[graphql(desc = "Defaults to `NEWEST_FIRST`.")] order_by: Option<OrderBy>,
    ) -> Result<OrderConnection> {
        let filter = Filter::try_from(filter.unwrap_or_default())?;
        let after = after.as_deref().map(parse_position).transpose()?;
        let page = orders::list(
            state(ctx)?,
            actor(ctx)?,
            PageRequest {
                filter: &filter,
                sort: order_by.unwrap_or_default().into(),
                first: page_size(first),
                after,
            },
            parts_wanted(ctx),
        )
        .await?;
        let details = Arc::new(page.details);
        let edges: Vec<OrderEdge> = page
            .orders
            .into_iter()
            .map(|order| OrderEdge {
                cursor: cursor_of(&order),
                node: Order(order, Some(details.clone())),
            })
            .collect();
        Ok(OrderConnection {
            page_info: PageInfo::of(
                edges.iter().map(|edge| &edge.cursor),
                page.has_next_page,
                after.is_some(),
            ),
            edges,
            filter,
        })
    }

    /// An order of the company; null for any other id, exactly as for one that does not exist.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>> {
        let id = parse_id("id", &id)?;
        Ok(orders::get(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(Order::single))
    }
}

#[derive(Default)]
pub struct OrderMutation;

#[Object]
impl OrderMutation {
    /// Creates an order (`orders:create`): prices come from the catalog, totals are computed,
    /// tracked stock is reserved, and the status is the active workflow's initial state.
    async fn create_order(&self, ctx: &Context<'_>, input: CreateOrderInput) -> Result<Order> {
        let items = input
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                parse_id(&format!("input.items.{index}.productId"), &item.product_id)
                    .map(|id| (id, item.quantity))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let new = NewOrder {
            customer_id: parse_id("input.customerId", &input.customer_id)?,
            items,
            notes: input.notes,
        };
        Ok(Order::single(
            orders::create(state(ctx)?, actor(ctx)?, new).await?,
        ))
    }

    /// Moves an order to another state of its workflow (`orders:transition` and one of the
    /// transition's roles).
    async fn transition_order(
        &self,
        ctx: &Context<'_>,
        input: TransitionOrderInput,
    ) -> Result<Order> {
        let request = TransitionRequest {
            order_id: parse_id("input.orderId", &input.order_id)?,
            to: input.to,
            comment: input.comment,
            expected_version: input.expected_version,
        };
        Ok(Order::single(
            orders::transition(state(ctx)?, actor(ctx)?, request).await?,
        ))
    }
}
