//! Workflows: each company's status machines, stored as data and versioned. An edit creates a
//! new version; orders keep the version they started with; new orders use the active one.

use chrono::Utc;
use entity::{role, workflow};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{authorize, valid_name};
use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::workflow::{Definition, order_template},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// The entity type orders run on.
pub const ORDER: &str = "ORDER";

/// A workflow definition as an admin submits it.
pub struct NewWorkflow {
    pub name: String,
    pub entity_type: String,
    pub definition: Definition,
}

/// A stored version with its parsed definition.
#[derive(Clone)]
pub struct WorkflowVersion {
    pub row: workflow::Model,
    pub definition: Definition,
}

impl WorkflowVersion {
    pub fn from_row(row: workflow::Model) -> ApiResult<Self> {
        let definition = serde_json::from_str(&row.definition).map_err(|error| {
            ApiError::internal(anyhow::anyhow!(
                "stored workflow {} is not a valid definition: {error}",
                row.id
            ))
        })?;
        Ok(Self { row, definition })
    }
}

fn to_json(definition: &Definition) -> ApiResult<String> {
    serde_json::to_string(definition).map_err(ApiError::internal)
}

fn valid_entity_type(entity_type: &str) -> ApiResult<String> {
    let entity_type = entity_type.trim().to_string();
    let valid = (2..=32).contains(&entity_type.len())
        && entity_type
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_');
    if valid {
        Ok(entity_type)
    } else {
        Err(ApiError::validation(
            "input.entityType",
            "an entity type is 2 to 32 upper-case letters or underscores, e.g. ORDER",
        ))
    }
}

/// Checks a definition against the company's roles.
async fn validate(txn: &TenantTxn, definition: &Definition) -> ApiResult<()> {
    let roles: Vec<String> = txn
        .find::<role::Entity>()
        .select_only()
        .column(role::Column::Name)
        .into_tuple()
        .all(txn)
        .await?;
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    definition
        .validate(&roles)
        .map_err(|invalid| ApiError::validation(invalid.field, invalid.message))
}

/// Copies the business type's templates into a new company (active, version 1).
pub async fn install_templates(txn: &TenantTxn, business_type: &str) -> ApiResult<()> {
    let (name, definition) = order_template(business_type);
    let now = Utc::now();
    txn.insert(workflow::ActiveModel {
        id: Set(Uuid::now_v7()),
        family_id: Set(Uuid::now_v7()),
        entity_type: Set(ORDER.to_string()),
        name: Set(name.to_string()),
        version: Set(1),
        active: Set(true),
        definition: Set(to_json(&definition)?),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// The company's workflows (every version), optionally of one entity type.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    entity_type: Option<&str>,
) -> ApiResult<Vec<WorkflowVersion>> {
    authorize(state, actor, "workflows", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<workflow::Entity>();
    if let Some(entity_type) = entity_type {
        query = query.filter(workflow::Column::EntityType.eq(entity_type.trim()));
    }
    let rows = query
        .order_by_asc(workflow::Column::EntityType)
        .order_by_asc(workflow::Column::FamilyId)
        .order_by_desc(workflow::Column::Version)
        .all(&txn)
        .await?;
    txn.commit().await?;
    rows.into_iter().map(WorkflowVersion::from_row).collect()
}

pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<Option<WorkflowVersion>> {
    authorize(state, actor, "workflows", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let row = find(&txn, id).await?;
    txn.commit().await?;
    row.map(WorkflowVersion::from_row).transpose()
}

async fn find(txn: &TenantTxn, id: Uuid) -> ApiResult<Option<workflow::Model>> {
    Ok(txn
        .find::<workflow::Entity>()
        .filter(workflow::Column::Id.eq(id))
        .one(txn)
        .await?)
}

/// The active version for `entity_type`, which new orders start on.
pub async fn active(txn: &TenantTxn, entity_type: &str) -> ApiResult<WorkflowVersion> {
    let row = txn
        .find::<workflow::Entity>()
        .filter(workflow::Column::EntityType.eq(entity_type))
        .filter(workflow::Column::Active.eq(true))
        .order_by_desc(workflow::Column::UpdatedAt)
        .one(txn)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "no active {entity_type} workflow: create or activate one first"
            ))
        })?;
    WorkflowVersion::from_row(row)
}

/// Deactivates every version of `entity_type` (inside the caller's transaction).
async fn deactivate_all(txn: &TenantTxn, entity_type: &str) -> ApiResult<()> {
    txn.update::<workflow::Entity>()
        .col_expr(workflow::Column::Active, Expr::value(false))
        .filter(workflow::Column::EntityType.eq(entity_type))
        .filter(workflow::Column::Active.eq(true))
        .exec(txn)
        .await?;
    Ok(())
}

/// A new workflow (version 1); it becomes active when its entity type has none active.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    new: NewWorkflow,
) -> ApiResult<WorkflowVersion> {
    authorize(state, actor, "workflows", "manage").await?;
    let entity_type = valid_entity_type(&new.entity_type)?;
    let name = valid_name("input.name", &new.name, 100)?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    validate(&txn, &new.definition).await?;
    let has_active = txn
        .find::<workflow::Entity>()
        .filter(workflow::Column::EntityType.eq(&entity_type))
        .filter(workflow::Column::Active.eq(true))
        .one(&txn)
        .await?
        .is_some();
    let row = insert_version(
        &txn,
        Uuid::now_v7(),
        &entity_type,
        &name,
        1,
        !has_active,
        &new.definition,
    )
    .await?;
    txn.commit().await?;
    WorkflowVersion::from_row(row)
}

#[allow(clippy::too_many_arguments)]
async fn insert_version(
    txn: &TenantTxn,
    family_id: Uuid,
    entity_type: &str,
    name: &str,
    version: i32,
    active: bool,
    definition: &Definition,
) -> ApiResult<workflow::Model> {
    let now = Utc::now();
    Ok(txn
        .insert(workflow::ActiveModel {
            id: Set(Uuid::now_v7()),
            family_id: Set(family_id),
            entity_type: Set(entity_type.to_string()),
            name: Set(name.to_string()),
            version: Set(version),
            active: Set(active),
            definition: Set(to_json(definition)?),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?)
}

/// Stores an edit as the next version of `id`'s workflow; it takes over if `id` was active.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    new: NewWorkflow,
) -> ApiResult<WorkflowVersion> {
    authorize(state, actor, "workflows", "manage").await?;
    let name = valid_name("input.name", &new.name, 100)?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let source = find(&txn, id)
        .await?
        .ok_or(ApiError::NotFound("workflow"))?;
    if valid_entity_type(&new.entity_type)? != source.entity_type {
        return Err(ApiError::validation(
            "input.entityType",
            "a new version keeps the entity type of the workflow",
        ));
    }
    validate(&txn, &new.definition).await?;
    let latest: Option<i32> = txn
        .find::<workflow::Entity>()
        .select_only()
        .column_as(workflow::Column::Version.max(), "latest")
        .filter(workflow::Column::FamilyId.eq(source.family_id))
        .into_tuple()
        .one(&txn)
        .await?
        .flatten();
    if source.active {
        deactivate_all(&txn, &source.entity_type).await?;
    }
    let row = insert_version(
        &txn,
        source.family_id,
        &source.entity_type,
        &name,
        latest.unwrap_or(source.version) + 1,
        source.active,
        &new.definition,
    )
    .await
    .map_err(|error| match error {
        ApiError::Internal(_) => {
            ApiError::Conflict("the workflow was edited meanwhile; retry".into())
        }
        other => other,
    })?;
    txn.commit().await?;
    WorkflowVersion::from_row(row)
}

/// Makes `id` the version new orders of its entity type start on.
pub async fn activate(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<WorkflowVersion> {
    authorize(state, actor, "workflows", "manage").await?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let row = find(&txn, id)
        .await?
        .ok_or(ApiError::NotFound("workflow"))?;
    deactivate_all(&txn, &row.entity_type).await?;
    txn.update::<workflow::Entity>()
        .col_expr(workflow::Column::Active, Expr::value(true))
        .col_expr(workflow::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(workflow::Column::Id.eq(row.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    WorkflowVersion::from_row(workflow::Model {
        active: true,
        ..row
    })
}
