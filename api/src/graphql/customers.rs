//! Customers of the actor's company.

use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use entity::customer;

use super::{
    context::{actor, parse_id, require, state},
    identity::field,
    pagination::{id_cursor, page_size, parse_id_cursor},
    plain::{Json, PlainObject, Selected},
};
use crate::{
    domain::{Email, document::TaxDocument, phone::Phone},
    error::ApiError,
    services::customers::{self, CustomerDetails},
};

/// Someone a company sells to. Contact details need `customers:read`, also when the customer
/// is reached through an order.
pub struct Customer(pub customer::Model);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        require(ctx, "customers", "read").await?;
        Ok(self.0.email.as_deref())
    }
    /// E.164, e.g. `+5511987654321`.
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        require(ctx, "customers", "read").await?;
        Ok(self.0.phone.as_deref())
    }
    /// CPF or CNPJ, formatted (`123.456.789-09`).
    async fn document(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        require(ctx, "customers", "read").await?;
        Ok(self
            .0
            .document
            .as_deref()
            .and_then(|digits| TaxDocument::parse(digits).ok())
            .map(|document| document.formatted()))
    }
    async fn address(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        require(ctx, "customers", "read").await?;
        Ok(self.0.address.as_deref())
    }
    async fn notes(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        require(ctx, "customers", "read").await?;
        Ok(self.0.notes.as_deref())
    }
    /// Archived customers stay on their orders but leave lists and new orders.
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }
    /// Cursor of this customer in `customers(after:)`.
    async fn cursor(&self) -> String {
        id_cursor(self.0.id)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The fields anyone who sees the customer may read; contact details need a permission check,
/// which the executor makes.
impl PlainObject for customer::Model {
    const TYPE_NAME: &'static str = "Customer";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        match field.name() {
            "id" => json.scalar(&ID(self.id.to_string())),
            "name" => json.text(&self.name),
            "archived" => json.scalar(&self.archived_at.is_some()),
            "cursor" => json.text(&id_cursor(self.id)),
            "createdAt" => json.scalar(&self.created_at),
            _ => return None,
        }
        Some(())
    }
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    name: String,
    email: Option<String>,
    /// E.164 (`+55 11 98765-4321` is accepted and normalised).
    phone: Option<String>,
    /// Brazilian CPF or CNPJ; check digits are verified.
    document: Option<String>,
    address: Option<String>,
    notes: Option<String>,
}

/// Changes to a customer; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    document: Option<String>,
    address: Option<String>,
    notes: Option<String>,
}

fn details(
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    document: Option<String>,
    address: Option<String>,
    notes: Option<String>,
) -> Result<CustomerDetails, ApiError> {
    Ok(CustomerDetails {
        name,
        email: email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(field("input.email"))?,
        phone: phone
            .as_deref()
            .map(Phone::parse)
            .transpose()
            .map_err(field("input.phone"))?,
        document: document
            .as_deref()
            .map(TaxDocument::parse)
            .transpose()
            .map_err(field("input.document"))?,
        address,
        notes,
    })
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// The company's customers, oldest first; pass the last `cursor` as `after` for the next page.
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] include_archived: bool,
    ) -> Result<Vec<Customer>> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let rows = customers::list(
            state(ctx)?,
            actor(ctx)?,
            page_size(first),
            after,
            include_archived,
        )
        .await?;
        Ok(rows.into_iter().map(Customer).collect())
    }

    /// A customer of the company; null for any other id.
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Customer>> {
        let id = parse_id("id", &id)?;
        Ok(customers::get(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(Customer))
    }
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Adds a customer (`customers:create`).
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> Result<Customer> {
        let details = details(
            Some(input.name),
            input.email,
            input.phone,
            input.document,
            input.address,
            input.notes,
        )?;
        Ok(Customer(
            customers::create(state(ctx)?, actor(ctx)?, details).await?,
        ))
    }

    /// Changes a customer (`customers:update`).
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCustomerInput,
    ) -> Result<Customer> {
        let id = parse_id("id", &id)?;
        let details = details(
            input.name,
            input.email,
            input.phone,
            input.document,
            input.address,
            input.notes,
        )?;
        Ok(Customer(
            customers::update(state(ctx)?, actor(ctx)?, id, details).await?,
        ))
    }

    /// Archives a customer (`customers:delete`).
    async fn archive_customer(&self, ctx: &Context<'_>, id: ID) -> Result<Customer> {
        let id = parse_id("id", &id)?;
        Ok(Customer(
            customers::archive(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }
}
