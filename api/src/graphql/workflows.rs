//! Workflows: the status machines a company configures as data.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::context::{actor, parse_id, state};
use crate::{
    domain::workflow::{Definition, State, Transition},
    services::workflows::{self, NewWorkflow, WorkflowVersion},
};

/// A state an entity can be in.
#[derive(SimpleObject)]
pub struct WorkflowState {
    key: String,
    label: String,
    /// New entities start here; exactly one state is initial.
    initial: bool,
    /// Nothing leaves a terminal state.
    terminal: bool,
    /// Reaching it gives back the stock the order reserved.
    releases_stock: bool,
    /// `#RRGGBB` for front ends.
    color: Option<String>,
}

impl From<&State> for WorkflowState {
    fn from(state: &State) -> Self {
        Self {
            key: state.key.clone(),
            label: state.label.clone(),
            initial: state.initial,
            terminal: state.terminal,
            releases_stock: state.releases_stock,
            color: state.color.clone(),
        }
    }
}

/// A move between two states and who may make it.
#[derive(SimpleObject)]
pub struct WorkflowTransition {
    from: String,
    to: String,
    label: Option<String>,
    /// Holding any one of these roles allows the move.
    roles: Vec<String>,
    /// The order must be paid first.
    requires_payment: bool,
}

impl From<&Transition> for WorkflowTransition {
    fn from(transition: &Transition) -> Self {
        Self {
            from: transition.from.clone(),
            to: transition.to.clone(),
            label: transition.label.clone(),
            roles: transition.roles.clone(),
            requires_payment: transition.requires_payment,
        }
    }
}

/// One version of a workflow.
pub struct Workflow(pub WorkflowVersion);

#[Object]
impl Workflow {
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.row.name
    }
    /// What it applies to, e.g. `ORDER`.
    async fn entity_type(&self) -> &str {
        &self.0.row.entity_type
    }
    /// 1 for a new workflow; each edit adds one.
    async fn version(&self) -> i32 {
        self.0.row.version
    }
    /// New entities of this type start on the active version.
    async fn active(&self) -> bool {
        self.0.row.active
    }
    async fn states(&self) -> Vec<WorkflowState> {
        self.0.definition.states.iter().map(Into::into).collect()
    }
    async fn transitions(&self) -> Vec<WorkflowTransition> {
        self.0
            .definition
            .transitions
            .iter()
            .map(Into::into)
            .collect()
    }
}

#[derive(InputObject)]
pub struct WorkflowStateInput {
    /// `^[A-Z][A-Z0-9_]*$`, unique in the workflow.
    key: String,
    label: String,
    initial: Option<bool>,
    terminal: Option<bool>,
    releases_stock: Option<bool>,
    color: Option<String>,
}

#[derive(InputObject)]
pub struct WorkflowTransitionInput {
    from: String,
    to: String,
    label: Option<String>,
    /// Role names of the company; at least one.
    roles: Vec<String>,
    requires_payment: Option<bool>,
}

#[derive(InputObject)]
pub struct WorkflowInput {
    name: String,
    /// e.g. `ORDER`.
    entity_type: String,
    states: Vec<WorkflowStateInput>,
    transitions: Vec<WorkflowTransitionInput>,
}

impl From<WorkflowInput> for NewWorkflow {
    fn from(input: WorkflowInput) -> Self {
        Self {
            name: input.name,
            entity_type: input.entity_type,
            definition: Definition {
                states: input
                    .states
                    .into_iter()
                    .map(|state| State {
                        key: state.key.trim().to_string(),
                        label: state.label,
                        initial: state.initial.unwrap_or(false),
                        terminal: state.terminal.unwrap_or(false),
                        releases_stock: state.releases_stock.unwrap_or(false),
                        color: state.color,
                    })
                    .collect(),
                transitions: input
                    .transitions
                    .into_iter()
                    .map(|transition| Transition {
                        from: transition.from.trim().to_string(),
                        to: transition.to.trim().to_string(),
                        label: transition.label,
                        roles: transition.roles,
                        requires_payment: transition.requires_payment.unwrap_or(false),
                    })
                    .collect(),
            },
        }
    }
}

#[derive(Default)]
pub struct WorkflowQuery;

#[Object]
impl WorkflowQuery {
    /// The company's workflows, every version, optionally of one entity type.
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        entity_type: Option<String>,
    ) -> Result<Vec<Workflow>> {
        let versions = workflows::list(state(ctx)?, actor(ctx)?, entity_type.as_deref()).await?;
        Ok(versions.into_iter().map(Workflow).collect())
    }

    /// One workflow version of the company; null for any other id.
    async fn workflow(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Workflow>> {
        let id = parse_id("id", &id)?;
        Ok(workflows::get(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(Workflow))
    }
}

#[derive(Default)]
pub struct WorkflowMutation;

#[Object]
impl WorkflowMutation {
    /// Creates a workflow (`workflows:manage`) after validating it; it becomes active when its
    /// entity type has no active workflow.
    async fn create_workflow(&self, ctx: &Context<'_>, input: WorkflowInput) -> Result<Workflow> {
        Ok(Workflow(
            workflows::create(state(ctx)?, actor(ctx)?, input.into()).await?,
        ))
    }

    /// Saves an edit as the next version (`workflows:manage`); existing orders keep theirs.
    async fn update_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: WorkflowInput,
    ) -> Result<Workflow> {
        let id = parse_id("id", &id)?;
        Ok(Workflow(
            workflows::update(state(ctx)?, actor(ctx)?, id, input.into()).await?,
        ))
    }

    /// Makes this version the one new entities start on (`workflows:manage`).
    async fn activate_workflow(&self, ctx: &Context<'_>, id: ID) -> Result<Workflow> {
        let id = parse_id("id", &id)?;
        Ok(Workflow(
            workflows::activate(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }
}
