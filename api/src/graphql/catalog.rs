//! Products and services of the actor's company.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result};
use entity::product;

use super::{
    context::{actor, parse_id, state},
    money::Money,
    pagination::{id_cursor, page_size, parse_id_cursor},
    plain::{Json, PlainObject, Selected},
};
use crate::services::catalog::{self, NewProduct, ProductChanges};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ProductKind {
    /// Something handed over; may track stock.
    Product,
    /// Work done (a repair, a consultation); never tracks stock.
    Service,
}

impl ProductKind {
    fn of(product: &product::Model) -> Self {
        if product.kind == "SERVICE" {
            Self::Service
        } else {
            Self::Product
        }
    }
}

impl PlainObject for product::Model {
    const TYPE_NAME: &'static str = "Product";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        match field.name() {
            "id" => json.scalar(&ID(self.id.to_string())),
            "sku" => json.text(&self.sku),
            "name" => json.text(&self.name),
            "kind" => json.enumeration(ProductKind::of(self)),
            "price" => json.object(&Money::of(self.price_minor, &self.currency).ok()?, field)?,
            "active" => json.scalar(&self.active),
            "trackStock" => json.scalar(&self.track_stock),
            "stock" => json.optional(self.stock.as_ref()),
            "cursor" => json.text(&id_cursor(self.id)),
            _ => return None,
        }
        Some(())
    }
}

impl From<ProductKind> for catalog::ProductKind {
    fn from(kind: ProductKind) -> Self {
        match kind {
            ProductKind::Product => Self::Product,
            ProductKind::Service => Self::Service,
        }
    }
}

/// An item of the catalog.
pub struct Product(pub product::Model);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique within the company.
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> ProductKind {
        ProductKind::of(&self.0)
    }
    /// Current price; orders keep the price they were made with.
    async fn price(&self) -> Result<Money> {
        Ok(Money::of(self.0.price_minor, &self.0.currency)?)
    }
    /// Whether it can be ordered.
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn track_stock(&self) -> bool {
        self.0.track_stock
    }
    /// Units left, when stock is tracked.
    async fn stock(&self) -> Option<i32> {
        self.0.stock
    }
    /// Cursor of this product in `products(after:)`.
    async fn cursor(&self) -> String {
        id_cursor(self.0.id)
    }
}

#[derive(InputObject)]
pub struct CreateProductInput {
    sku: String,
    name: String,
    kind: ProductKind,
    /// Price in minor units of the company currency.
    price_minor: i64,
    track_stock: Option<bool>,
    /// Initial stock (with `trackStock: true`).
    stock: Option<i32>,
}

/// Changes to a product; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProductInput {
    name: Option<String>,
    price_minor: Option<i64>,
    active: Option<bool>,
    /// Sets the stock count (only for products that track stock).
    stock: Option<i32>,
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// The catalog, oldest first; pass the last `cursor` as `after` for the next page.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] include_inactive: bool,
    ) -> Result<Vec<Product>> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let rows = catalog::list(
            state(ctx)?,
            actor(ctx)?,
            page_size(first),
            after,
            include_inactive,
        )
        .await?;
        Ok(rows.into_iter().map(Product).collect())
    }

    /// A product of the company; null for any other id.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        let id = parse_id("id", &id)?;
        Ok(catalog::get(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(Product))
    }
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Adds a product or service (`catalog:create`), priced in the company currency.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> Result<Product> {
        let new = NewProduct {
            sku: input.sku,
            name: input.name,
            kind: input.kind.into(),
            price_minor: input.price_minor,
            track_stock: input.track_stock.unwrap_or(false),
            stock: input.stock,
        };
        Ok(Product(
            catalog::create(state(ctx)?, actor(ctx)?, new).await?,
        ))
    }

    /// Changes a product (`catalog:update`).
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> Result<Product> {
        let id = parse_id("id", &id)?;
        let changes = ProductChanges {
            name: input.name,
            price_minor: input.price_minor,
            active: input.active,
            stock: input.stock,
        };
        Ok(Product(
            catalog::update(state(ctx)?, actor(ctx)?, id, changes).await?,
        ))
    }

    /// Takes a product out of sale (`catalog:delete`).
    async fn archive_product(&self, ctx: &Context<'_>, id: ID) -> Result<Product> {
        let id = parse_id("id", &id)?;
        Ok(Product(
            catalog::archive(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }
}
