//! Role-based access control with casbin: RBAC with domains, where the domain is always the
//! actor's company (never taken from a request), policies stored in `casbin_rule`.
//!
//! Services write `casbin_rule` rows inside their own transaction (so a role change is atomic
//! with the rest of the mutation), then call [`Rbac::access_changed`]: this instance reloads at
//! once and, with Redis, every other instance reloads on the notice. A periodic reload covers a
//! missed notice. The same notice empties the [`MemberCache`] authentication reads.

pub mod adapter;
mod catalog;
mod members;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use casbin::{CoreApi, DefaultModel, Enforcer, MgmtApi, RbacApi};
use sea_orm::DatabaseConnection;
use tokio::sync::RwLock;
use uuid::Uuid;

pub use catalog::{
    ACTIONS, ADMIN, BuiltInRole, Permission, RESOURCES, built_in_roles, is_valid_role_name,
};
pub use members::{MemberCache, MemberState};

use crate::auth::Actor;

/// How often every instance reloads policies even without a notice.
const PERIODIC_RELOAD: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Rbac {
    enforcer: Arc<RwLock<Enforcer>>,
    members: Arc<MemberCache>,
    db: DatabaseConnection,
    notifier: Option<Notifier>,
}

#[derive(Clone)]
struct Notifier {
    connection: redis::aio::ConnectionManager,
    channel: String,
}

impl Rbac {
    /// Loads every policy from the database.
    pub async fn load(db: DatabaseConnection) -> anyhow::Result<Self> {
        let enforcer = build_enforcer(&db).await?;
        Ok(Self {
            enforcer: Arc::new(RwLock::new(enforcer)),
            members: Arc::default(),
            db,
            notifier: None,
        })
    }

    /// Shares policy changes with other instances through Redis and starts the listeners.
    pub async fn with_redis(
        mut self,
        client: &redis::Client,
        connection: redis::aio::ConnectionManager,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let channel = format!("{namespace}:rbac:changed");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .context("Failed to open a Redis pub/sub connection")?;
        pubsub
            .subscribe(&channel)
            .await
            .context("Failed to subscribe to RBAC notices")?;
        let enforcer = self.enforcer.clone();
        let members = self.members.clone();
        let db = self.db.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                reload(&enforcer, &members, &db).await;
            }
            tracing::warn!("RBAC notice subscription ended; relying on periodic reloads");
        });
        self.notifier = Some(Notifier {
            connection,
            channel,
        });
        Ok(self)
    }

    /// Reloads periodically, in case a notice was missed.
    pub fn spawn_periodic_reload(&self) {
        let enforcer = Arc::downgrade(&self.enforcer);
        let members = self.members.clone();
        let db = self.db.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PERIODIC_RELOAD);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(enforcer) = enforcer.upgrade() else {
                    return;
                };
                reload(&enforcer, &members, &db).await;
            }
        });
    }

    /// Whether `actor` may perform `action` on `resource` in its own company.
    pub async fn allows(&self, actor: &Actor, resource: &str, action: &str) -> bool {
        self.subject_allows(&actor.subject(), actor.company_id(), resource, action)
            .await
    }

    pub async fn subject_allows(
        &self,
        subject: &str,
        company_id: Uuid,
        resource: &str,
        action: &str,
    ) -> bool {
        let domain = company_id.to_string();
        let enforcer = self.enforcer.read().await;
        match enforcer.enforce((subject, domain.as_str(), resource, action)) {
            Ok(allowed) => allowed,
            Err(error) => {
                tracing::error!(%error, "casbin enforce failed; denying");
                false
            }
        }
    }

    /// The roles `subject` holds in `company_id`.
    pub async fn roles_of(&self, subject: &str, company_id: Uuid) -> Vec<String> {
        let domain = company_id.to_string();
        let enforcer = self.enforcer.read().await;
        let mut roles = enforcer.get_roles_for_user(subject, Some(&domain));
        roles.sort();
        roles
    }

    /// The permissions granted to `role` in `company_id`.
    pub async fn permissions_of(&self, role: &str, company_id: Uuid) -> Vec<Permission> {
        let domain = company_id.to_string();
        let enforcer = self.enforcer.read().await;
        let mut permissions: Vec<Permission> = enforcer
            .get_filtered_policy(0, vec![role.to_string(), domain])
            .into_iter()
            .filter_map(|rule| Permission::from_rule(&rule))
            .collect();
        permissions.sort();
        permissions
    }

    /// What authentication knows of members, emptied whenever access changes.
    pub fn members(&self) -> &MemberCache {
        &self.members
    }

    /// Call after committing a change to `casbin_rule`, a membership, a company's status or API
    /// limit, or a password: reloads here, notifies the others.
    pub async fn access_changed(&self) {
        reload(&self.enforcer, &self.members, &self.db).await;
        if let Some(notifier) = &self.notifier {
            let mut connection = notifier.connection.clone();
            let published: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(&notifier.channel)
                .arg("changed")
                .query_async(&mut connection)
                .await;
            if let Err(error) = published {
                tracing::warn!(%error, "failed to publish an RBAC notice; others reload within 30 s");
            }
        }
    }
}

async fn build_enforcer(db: &DatabaseConnection) -> anyhow::Result<Enforcer> {
    let model = DefaultModel::from_str(adapter::MODEL)
        .await
        .context("Failed to parse the casbin model")?;
    let mut enforcer = Enforcer::new(model, adapter::SeaOrmAdapter::new(db.clone()))
        .await
        .context("Failed to load RBAC policies")?;
    // Services write rules in their own transactions; the enforcer only reads.
    enforcer.enable_auto_save(false);
    Ok(enforcer)
}

/// Loads into a fresh enforcer and swaps it in, so requests are answered by the old policies
/// while the new ones load.
async fn reload(enforcer: &RwLock<Enforcer>, members: &MemberCache, db: &DatabaseConnection) {
    members.clear();
    match build_enforcer(db).await {
        Ok(fresh) => *enforcer.write().await = fresh,
        Err(error) => {
            tracing::error!(error = ?error, "failed to reload RBAC policies; keeping the previous ones")
        }
    }
}
