//! Role-based access control with casbin: RBAC with domains, where the domain is always the
//! actor's company (never taken from a request), policies stored in `casbin_rule`.
//!
//! Services write `casbin_rule` rows inside their own transaction (so a role change is atomic
//! with the rest of the mutation), then call [`Rbac::access_changed`] with the company: this
//! instance reloads that company's policies at once and, with Redis, every other instance does
//! on the notice, which names the company. A full reload runs periodically and after the notice
//! subscription comes back (a notice may have been missed). The same notice empties the
//! [`MemberCache`] authentication reads.
//!
//! Loads are versioned: each takes a ticket from one counter before it reads, and installs only
//! if no load with a later ticket is installed for the same rules, so a load that read before a
//! revoke committed can never replace one that read after it, whatever order they finish in.

pub mod adapter;
mod catalog;
mod members;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use casbin::{Adapter, CoreApi, DefaultModel, Enforcer, Filter, MgmtApi, Model, RbacApi};
use sea_orm::DatabaseConnection;
use tokio::sync::{RwLock, watch};
use uuid::Uuid;

pub use catalog::{
    ACTIONS, ADMIN, BuiltInRole, Permission, RESOURCES, built_in_roles, is_valid_role_name,
};
pub use members::{MemberCache, MemberState};

use crate::{
    auth::Actor,
    events::subscription::{self, Received, Subscription, SubscriptionHealth},
};

/// How often every instance reloads policies even without a notice.
const PERIODIC_RELOAD: Duration = Duration::from_secs(30);
/// The notice of a change that touched no policy (a password): empty the member cache only.
const MEMBERS_NOTICE: &str = "members";

#[derive(Clone)]
pub struct Rbac {
    policies: Policies,
    notifier: Option<Notifier>,
}

/// The installed policies and how to reload them.
#[derive(Clone)]
struct Policies {
    installed: Arc<RwLock<Installed>>,
    /// Hands out load tickets: a later ticket read the database later.
    tickets: Arc<AtomicU64>,
    members: Arc<MemberCache>,
    db: DatabaseConnection,
}

/// The enforcer and the tickets of the loads it holds.
struct Installed {
    enforcer: Enforcer,
    /// The ticket of the full load it was built from.
    full: u64,
    /// Companies reloaded alone since, with their load's ticket (always later than `full`).
    companies: HashMap<Uuid, u64>,
}

#[derive(Clone)]
struct Notifier {
    connection: redis::aio::ConnectionManager,
    channel: String,
    /// Taken by [`Rbac::spawn_notice_listener`]; the server runs one per instance.
    subscription: Arc<std::sync::Mutex<Option<Subscription>>>,
    health: Arc<SubscriptionHealth>,
}

impl Rbac {
    /// Loads every policy from the database.
    pub async fn load(db: DatabaseConnection) -> anyhow::Result<Self> {
        let enforcer = build_enforcer(&db).await?;
        Ok(Self {
            policies: Policies {
                installed: Arc::new(RwLock::new(Installed {
                    enforcer,
                    full: 0,
                    companies: HashMap::new(),
                })),
                tickets: Arc::default(),
                members: Arc::default(),
                db,
            },
            notifier: None,
        })
    }

    /// Shares policy changes with other instances through Redis. Subscribes at once (an
    /// unreachable Redis stops the start); the server listens with
    /// [`Self::spawn_notice_listener`].
    pub async fn with_redis(
        mut self,
        client: &redis::Client,
        connection: redis::aio::ConnectionManager,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let channel = format!("{namespace}:rbac:changed");
        let subscription = Subscription::open(client, channel.clone()).await?;
        self.notifier = Some(Notifier {
            connection,
            channel,
            health: subscription.health(),
            subscription: Arc::new(std::sync::Mutex::new(Some(subscription))),
        });
        Ok(self)
    }

    /// With Redis, applies other instances' notices until `stop` turns true, resubscribing
    /// whenever the subscription is lost and reloading everything when it is back.
    pub fn spawn_notice_listener(&self, mut stop: watch::Receiver<bool>) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let taken = notifier
            .subscription
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut subscription) = taken else {
            tracing::warn!("the RBAC notice listener is already running");
            return;
        };
        let policies = self.policies.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = subscription.next() => match received {
                        Received::Message(message) => policies.apply_notice(&message).await,
                        Received::Subscribed => policies.reload_all().await,
                    },
                    () = subscription::stopped(&mut stop) => return,
                }
            }
        });
    }

    /// Whether the Redis notice subscription is up; `None` without Redis.
    pub fn subscription_health(&self) -> Option<bool> {
        self.notifier
            .as_ref()
            .map(|notifier| notifier.health.is_subscribed())
    }

    /// Reloads everything periodically, in case a notice was missed, until `stop` turns true.
    pub fn spawn_periodic_reload(&self, mut stop: watch::Receiver<bool>) {
        let policies = self.policies.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PERIODIC_RELOAD);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => policies.reload_all().await,
                    () = subscription::stopped(&mut stop) => return,
                }
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
        let installed = self.policies.installed.read().await;
        match installed
            .enforcer
            .enforce((subject, domain.as_str(), resource, action))
        {
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
        let installed = self.policies.installed.read().await;
        let mut roles = installed
            .enforcer
            .get_roles_for_user(subject, Some(&domain));
        roles.sort();
        roles
    }

    /// The permissions granted to `role` in `company_id`.
    pub async fn permissions_of(&self, role: &str, company_id: Uuid) -> Vec<Permission> {
        let domain = company_id.to_string();
        let installed = self.policies.installed.read().await;
        let mut permissions: Vec<Permission> = installed
            .enforcer
            .get_filtered_policy(0, vec![role.to_string(), domain])
            .into_iter()
            .filter_map(|rule| Permission::from_rule(&rule))
            .collect();
        permissions.sort();
        permissions
    }

    /// What authentication knows of members, emptied whenever access changes.
    pub fn members(&self) -> &MemberCache {
        &self.policies.members
    }

    /// Call after committing a change to `company_id`'s `casbin_rule` rows, memberships, status
    /// or API limit: reloads that company here and notifies the others.
    pub async fn access_changed(&self, company_id: Uuid) {
        self.policies.reload_company(company_id).await;
        self.notify(&company_id.to_string()).await;
    }

    /// Call after committing a change that authentication reads of a member but no policy holds
    /// (a password): empties the member cache here and on the others.
    pub async fn members_changed(&self) {
        self.policies.members.clear();
        self.notify(MEMBERS_NOTICE).await;
    }

    async fn notify(&self, notice: &str) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let mut connection = notifier.connection.clone();
        let published: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&notifier.channel)
            .arg(notice)
            .query_async(&mut connection)
            .await;
        if let Err(error) = published {
            metrics::counter!("rbac_notice_failures_total").increment(1);
            tracing::warn!(%error, "failed to publish an RBAC notice; others reload within 30 s");
        }
    }
}

impl Policies {
    fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::AcqRel) + 1
    }

    async fn apply_notice(&self, message: &redis::Msg) {
        let notice = message.get_payload::<String>().unwrap_or_default();
        if notice == MEMBERS_NOTICE {
            self.members.clear();
            return;
        }
        match Uuid::parse_str(&notice) {
            Ok(company_id) => self.reload_company(company_id).await,
            // An instance of an older version, or a notice we cannot read: reload everything.
            Err(_) => self.reload_all().await,
        }
    }

    /// Loads every policy into a fresh enforcer and swaps it in, so requests are answered by
    /// the old policies while the new ones load.
    async fn reload_all(&self) {
        self.members.clear();
        let ticket = self.ticket();
        let fresh = match build_enforcer(&self.db).await {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::error!(error = ?error, "failed to reload RBAC policies; keeping the previous ones");
                return;
            }
        };
        self.install_all(fresh, ticket).await;
    }

    /// Installs a full load read with `ticket`, unless a later full load is installed. Companies
    /// reloaded alone after `ticket` keep their newer rules.
    async fn install_all(&self, mut fresh: Enforcer, ticket: u64) {
        let mut installed = self.installed.write().await;
        if ticket <= installed.full {
            metrics::counter!("rbac_stale_loads_discarded_total").increment(1);
            return;
        }
        let mut newer = HashMap::new();
        for (&company_id, &company_ticket) in &installed.companies {
            if company_ticket > ticket {
                let (policies, groupings) = company_rules_of(&installed.enforcer, company_id);
                if let Err(error) =
                    replace_company(&mut fresh, company_id, policies, groupings).await
                {
                    tracing::error!(%error, "failed to keep a newer company load; keeping the previous policies");
                    return;
                }
                newer.insert(company_id, company_ticket);
            }
        }
        *installed = Installed {
            enforcer: fresh,
            full: ticket,
            companies: newer,
        };
    }

    /// Reloads the rules of one company in place, leaving every other company's untouched.
    async fn reload_company(&self, company_id: Uuid) {
        self.members.clear();
        let ticket = self.ticket();
        let (policies, groupings) = match load_company_rules(&self.db, company_id).await {
            Ok(rules) => rules,
            Err(error) => {
                tracing::error!(error = ?error, %company_id, "failed to reload a company's RBAC policies; reloading everything");
                self.reload_all().await;
                return;
            }
        };
        self.install_company(company_id, policies, groupings, ticket)
            .await;
    }

    /// Installs one company's rules read with `ticket`, unless a later load of them is installed.
    async fn install_company(
        &self,
        company_id: Uuid,
        policies: Vec<Vec<String>>,
        groupings: Vec<Vec<String>>,
        ticket: u64,
    ) {
        let mut installed = self.installed.write().await;
        let newest = installed
            .companies
            .get(&company_id)
            .copied()
            .unwrap_or(0)
            .max(installed.full);
        if ticket <= newest {
            metrics::counter!("rbac_stale_loads_discarded_total").increment(1);
            return;
        }
        if let Err(error) =
            replace_company(&mut installed.enforcer, company_id, policies, groupings).await
        {
            drop(installed);
            tracing::error!(%error, %company_id, "failed to install a company's RBAC policies; reloading everything");
            self.reload_all().await;
            return;
        }
        installed.companies.insert(company_id, ticket);
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

/// Where the company sits in a `p` rule (`role, company, object, action`) and a `g` rule
/// (`user, role, company`).
const POLICY_DOMAIN: usize = 1;
const GROUPING_DOMAIN: usize = 2;

/// The `p` and `g` rules of one company, read from the database.
async fn load_company_rules(
    db: &DatabaseConnection,
    company_id: Uuid,
) -> anyhow::Result<(Vec<Vec<String>>, Vec<Vec<String>>)> {
    let domain = company_id.to_string();
    let mut model = DefaultModel::from_str(adapter::MODEL)
        .await
        .context("Failed to parse the casbin model")?;
    adapter::SeaOrmAdapter::new(db.clone())
        .load_filtered_policy(
            &mut model,
            Filter {
                p: vec!["", &domain],
                g: vec!["", "", &domain],
            },
        )
        .await
        .context("Failed to load a company's RBAC policies")?;
    Ok((model.get_policy("p", "p"), model.get_policy("g", "g")))
}

/// The `p` and `g` rules of one company as `enforcer` holds them.
fn company_rules_of(enforcer: &Enforcer, company_id: Uuid) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let domain = company_id.to_string();
    (
        enforcer.get_filtered_policy(POLICY_DOMAIN, vec![domain.clone()]),
        enforcer.get_filtered_grouping_policy(GROUPING_DOMAIN, vec![domain]),
    )
}

/// Replaces what `enforcer` holds of one company with `policies` and `groupings`, in memory only
/// (auto-save is off).
async fn replace_company(
    enforcer: &mut Enforcer,
    company_id: Uuid,
    policies: Vec<Vec<String>>,
    groupings: Vec<Vec<String>>,
) -> casbin::Result<()> {
    let domain = company_id.to_string();
    enforcer
        .remove_filtered_policy(POLICY_DOMAIN, vec![domain.clone()])
        .await?;
    enforcer
        .remove_filtered_grouping_policy(GROUPING_DOMAIN, vec![domain])
        .await?;
    if !policies.is_empty() {
        enforcer.add_policies(policies).await?;
    }
    if !groupings.is_empty() {
        enforcer.add_grouping_policies(groupings).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use migration::MigratorTrait;
    use sea_orm::{ConnectOptions, Database};

    use super::*;

    async fn empty_rbac() -> Rbac {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        let db = Database::connect(options).await.expect("connect to SQLite");
        migration::Migrator::up(&db, None).await.expect("migrate");
        Rbac::load(db).await.expect("loads")
    }

    fn rule(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    /// What a load of `company` reads while alice holds the manager role there, and after.
    fn granted(company: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        (
            vec![rule(&["manager", company, "orders", "read"])],
            vec![rule(&["alice", "manager", company])],
        )
    }

    fn revoked(company: &str) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        (vec![rule(&["manager", company, "orders", "read"])], vec![])
    }

    async fn full_load(
        rbac: &Rbac,
        (policies, groupings): (Vec<Vec<String>>, Vec<Vec<String>>),
    ) -> Enforcer {
        let mut enforcer = build_enforcer(&rbac.policies.db).await.expect("builds");
        if !policies.is_empty() {
            enforcer.add_policies(policies).await.expect("adds p");
        }
        if !groupings.is_empty() {
            enforcer
                .add_grouping_policies(groupings)
                .await
                .expect("adds g");
        }
        enforcer
    }

    async fn alice_reads(rbac: &Rbac, company: Uuid) -> bool {
        rbac.subject_allows("alice", company, "orders", "read")
            .await
    }

    #[tokio::test]
    async fn a_company_load_that_read_before_a_revoke_cannot_restore_it() {
        let rbac = empty_rbac().await;
        let company = Uuid::new_v4();
        let domain = company.to_string();
        let policies = &rbac.policies;

        let read_before_revoke = policies.ticket();
        let read_after_revoke = policies.ticket();
        let (p, g) = revoked(&domain);
        policies
            .install_company(company, p, g, read_after_revoke)
            .await;
        let (p, g) = granted(&domain);
        policies
            .install_company(company, p, g, read_before_revoke)
            .await;

        assert!(!alice_reads(&rbac, company).await);
    }

    #[tokio::test]
    async fn a_full_load_keeps_the_newer_rules_of_a_company_reloaded_meanwhile() {
        let rbac = empty_rbac().await;
        let (company, other) = (Uuid::new_v4(), Uuid::new_v4());
        let policies = &rbac.policies;
        let (mut p, mut g) = granted(&company.to_string());
        let (other_p, other_g) = granted(&other.to_string());
        p.extend(other_p);
        g.extend(other_g);

        let full_before_revoke = policies.ticket();
        let stale = full_load(&rbac, (p, g)).await;
        let company_after_revoke = policies.ticket();
        let (p, g) = revoked(&company.to_string());
        policies
            .install_company(company, p, g, company_after_revoke)
            .await;
        policies.install_all(stale, full_before_revoke).await;

        assert!(!alice_reads(&rbac, company).await, "the revoke stays");
        assert!(
            alice_reads(&rbac, other).await,
            "the full load went in for the rest"
        );
    }

    #[tokio::test]
    async fn an_older_full_load_never_replaces_a_newer_one() {
        let rbac = empty_rbac().await;
        let company = Uuid::new_v4();
        let policies = &rbac.policies;

        let older = policies.ticket();
        let stale = full_load(&rbac, granted(&company.to_string())).await;
        let newer = policies.ticket();
        let fresh = full_load(&rbac, revoked(&company.to_string())).await;
        policies.install_all(fresh, newer).await;
        policies.install_all(stale, older).await;

        assert!(!alice_reads(&rbac, company).await);
    }

    #[tokio::test]
    async fn a_company_reload_leaves_other_companies_alone() {
        let rbac = empty_rbac().await;
        let (company, other) = (Uuid::new_v4(), Uuid::new_v4());
        let policies = &rbac.policies;
        let (mut p, mut g) = granted(&company.to_string());
        let (other_p, other_g) = granted(&other.to_string());
        p.extend(other_p);
        g.extend(other_g);
        let ticket = policies.ticket();
        policies
            .install_all(full_load(&rbac, (p, g)).await, ticket)
            .await;

        let (p, g) = revoked(&company.to_string());
        let ticket = policies.ticket();
        policies.install_company(company, p, g, ticket).await;

        assert!(!alice_reads(&rbac, company).await);
        assert!(alice_reads(&rbac, other).await);
    }
}
