//! The casbin policy store: [`SeaOrmAdapter`] keeps casbin's `p` (permission) and `g` (role grant)
//! rules in the `casbin_rule` table, one row per rule, and [`MODEL`] is the RBAC-with-domains
//! model those rules are written for.
//!
//! We wrote our own adapter because the published ones pin older stacks: `sea-orm-adapter` targets
//! sea-orm 1 and `sqlx-adapter` sqlx 0.8, while this workspace runs sea-orm 2 (sqlx 0.9). Owning
//! it also lets the store enforce tenancy: every rule's domain is a company id, stored in the
//! `company_id` column (a foreign key to `companies`). A rule whose domain is not a company id in
//! canonical form (lowercase, hyphenated), such as the wildcard `*`, is refused with an error and
//! never stored, so no rule can reach across companies.
//!
//! Where the domain sits: `p` rules are `[sub, dom, obj, act]` (domain at index 1), `g` rules are
//! `[user, role, dom]` (domain at index 2). Rules are padded with `""` to the six value columns
//! when stored and trimmed back when loaded.

use std::{collections::HashSet, fmt};

use async_trait::async_trait;
use casbin::{Adapter, Filter, Model, error::AdapterError};
use entity::casbin_rule::{ActiveModel, Column, Entity as CasbinRule, Model as CasbinRuleRow};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

/// The casbin model: role-based access control with domains, where the domain is a company id.
///
/// A user holds a role within one company (`g = user, role, company`); a role is allowed an
/// action on an object within one company (`p = role, company, object, action`). `*` is a
/// wildcard for the object and the action, never for the company.
pub const MODEL: &str = r#"[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && (p.obj == "*" || r.obj == p.obj) && (p.act == "*" || r.act == p.act)
"#;

/// Value columns `v0..v5` in the table.
const VALUE_COLUMNS: usize = 6;
/// Width of `ptype` and of each value column in the migration.
const MAX_PTYPE_LEN: usize = 8;
const MAX_VALUE_LEN: usize = 128;
/// Rows per `INSERT`; 8 bound values each keeps a statement under SQLite's 999-parameter limit.
const INSERT_CHUNK: usize = 100;

/// Why the adapter refused a rule. It reaches callers as
/// `casbin::Error::AdapterError(AdapterError(Box<RuleError>))`, from which it can be downcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The policy type starts with neither `p` nor `g`, so it has no known domain position.
    UnknownPtype(String),
    /// The rule is too short to have a domain at the position its type requires.
    MissingDomain { ptype: String, index: usize },
    /// The domain is not a company id in canonical form (lowercase, hyphenated UUID).
    InvalidDomain { ptype: String, domain: String },
    /// The rule has more values than the table has columns.
    TooManyValues { ptype: String, len: usize },
    /// A value (or the policy type) is wider than its column.
    ValueTooLong { ptype: String, index: usize },
    /// `remove_filtered_policy` was given a non-empty value beyond the last column.
    FieldOutOfRange { ptype: String, index: usize },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPtype(ptype) => write!(
                f,
                "policy type {ptype:?} has no domain position (it must start with 'p' or 'g')"
            ),
            Self::MissingDomain { ptype, index } => write!(
                f,
                "a {ptype:?} rule needs a company id domain at position {index}"
            ),
            Self::InvalidDomain { ptype, domain } => write!(
                f,
                "a {ptype:?} rule's domain must be a company id (lowercase hyphenated UUID), got {domain:?}"
            ),
            Self::TooManyValues { ptype, len } => write!(
                f,
                "a {ptype:?} rule has {len} values; at most {VALUE_COLUMNS} can be stored"
            ),
            Self::ValueTooLong { ptype, index } => write!(
                f,
                "value {index} of a {ptype:?} rule is longer than {MAX_VALUE_LEN} characters"
            ),
            Self::FieldOutOfRange { ptype, index } => write!(
                f,
                "a {ptype:?} filter has a value at position {index}; rules have {VALUE_COLUMNS} values"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// Casbin's [`Adapter`] over the `casbin_rule` table.
///
/// Cloning the [`DatabaseConnection`] is cheap (it is a pool handle), so an adapter per enforcer
/// is fine. Every multi-row change runs in one transaction.
pub struct SeaOrmAdapter {
    db: DatabaseConnection,
    is_filtered: bool,
}

impl SeaOrmAdapter {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            is_filtered: false,
        }
    }
}

fn db_error(error: DbErr) -> casbin::Error {
    AdapterError(Box::new(error)).into()
}

fn rule_error(error: RuleError) -> casbin::Error {
    AdapterError(Box::new(error)).into()
}

/// Position of the domain in a rule of this policy type.
fn domain_index(ptype: &str) -> Result<usize, RuleError> {
    if ptype.starts_with('p') {
        Ok(1)
    } else if ptype.starts_with('g') {
        Ok(2)
    } else {
        Err(RuleError::UnknownPtype(ptype.to_owned()))
    }
}

/// The company a domain names; only the canonical form is accepted, so the stored domain string
/// and `company_id` always agree and the matcher's `r.dom == p.dom` compares like with like.
fn parse_domain(domain: &str) -> Option<Uuid> {
    Uuid::parse_str(domain)
        .ok()
        .filter(|id| id.hyphenated().to_string() == domain)
}

fn value_column(index: usize) -> Option<Column> {
    match index {
        0 => Some(Column::V0),
        1 => Some(Column::V1),
        2 => Some(Column::V2),
        3 => Some(Column::V3),
        4 => Some(Column::V4),
        5 => Some(Column::V5),
        _ => None,
    }
}

/// The columns of the unique index, the conflict target for idempotent inserts.
fn unique_columns() -> [Column; 8] {
    [
        Column::CompanyId,
        Column::Ptype,
        Column::V0,
        Column::V1,
        Column::V2,
        Column::V3,
        Column::V4,
        Column::V5,
    ]
}

/// A rule as it is stored: its company and its six values, padded with `""`.
#[derive(Clone, PartialEq, Eq, Hash)]
struct StoredRule {
    company_id: Uuid,
    ptype: String,
    values: [String; VALUE_COLUMNS],
}

impl StoredRule {
    fn new(ptype: &str, rule: &[String]) -> Result<Self, RuleError> {
        if ptype.is_empty() || ptype.chars().count() > MAX_PTYPE_LEN {
            return Err(RuleError::UnknownPtype(ptype.to_owned()));
        }
        let index = domain_index(ptype)?;
        if rule.len() > VALUE_COLUMNS {
            return Err(RuleError::TooManyValues {
                ptype: ptype.to_owned(),
                len: rule.len(),
            });
        }
        let domain = rule.get(index).ok_or_else(|| RuleError::MissingDomain {
            ptype: ptype.to_owned(),
            index,
        })?;
        let company_id = parse_domain(domain).ok_or_else(|| RuleError::InvalidDomain {
            ptype: ptype.to_owned(),
            domain: domain.clone(),
        })?;
        if let Some(index) = rule
            .iter()
            .position(|value| value.chars().count() > MAX_VALUE_LEN)
        {
            return Err(RuleError::ValueTooLong {
                ptype: ptype.to_owned(),
                index,
            });
        }
        let values = std::array::from_fn(|i| rule.get(i).cloned().unwrap_or_default());
        Ok(Self {
            company_id,
            ptype: ptype.to_owned(),
            values,
        })
    }

    /// Validates every rule before anything touches the database, dropping exact duplicates.
    fn many(ptype: &str, rules: &[Vec<String>]) -> Result<Vec<Self>, RuleError> {
        let mut seen = HashSet::new();
        let mut stored = Vec::with_capacity(rules.len());
        for rule in rules {
            let rule = Self::new(ptype, rule)?;
            if seen.insert(rule.clone()) {
                stored.push(rule);
            }
        }
        Ok(stored)
    }

    fn into_active_model(self) -> ActiveModel {
        let [v0, v1, v2, v3, v4, v5] = self.values;
        ActiveModel {
            company_id: Set(self.company_id),
            ptype: Set(self.ptype),
            v0: Set(v0),
            v1: Set(v1),
            v2: Set(v2),
            v3: Set(v3),
            v4: Set(v4),
            v5: Set(v5),
            ..Default::default()
        }
    }

    /// Matches exactly this row.
    fn condition(&self) -> Condition {
        let [v0, v1, v2, v3, v4, v5] = &self.values;
        Condition::all()
            .add(Column::CompanyId.eq(self.company_id))
            .add(Column::Ptype.eq(self.ptype.as_str()))
            .add(Column::V0.eq(v0.as_str()))
            .add(Column::V1.eq(v1.as_str()))
            .add(Column::V2.eq(v2.as_str()))
            .add(Column::V3.eq(v3.as_str()))
            .add(Column::V4.eq(v4.as_str()))
            .add(Column::V5.eq(v5.as_str()))
    }
}

/// Inserts rows, skipping any already stored; returns how many were new.
async fn insert_rules<C: ConnectionTrait>(db: &C, rules: Vec<StoredRule>) -> Result<u64, DbErr> {
    let mut inserted = 0;
    let mut rules = rules.into_iter().peekable();
    while rules.peek().is_some() {
        let chunk: Vec<ActiveModel> = rules
            .by_ref()
            .take(INSERT_CHUNK)
            .map(StoredRule::into_active_model)
            .collect();
        let result = CasbinRule::insert_many(chunk)
            .on_conflict_do_nothing_on(unique_columns())
            .exec_without_returning(db)
            .await?;
        if let TryInsertResult::Inserted(rows) = result {
            inserted += rows;
        }
    }
    Ok(inserted)
}

/// How many values a rule of this type has in the model (`p` tokens, `_`s of a `g`), if known.
fn model_rule_len(m: &dyn Model, sec: &str, ptype: &str) -> Option<usize> {
    let assertion = m.get_model().get(sec)?.get(ptype)?;
    let len = if sec == "g" {
        assertion.value.matches('_').count()
    } else {
        assertion.tokens.len()
    };
    (len > 0).then_some(len)
}

/// Loads one row into the model; rows whose `company_id` disagrees with their domain are skipped.
fn load_row(m: &mut dyn Model, row: CasbinRuleRow) {
    let Ok(index) = domain_index(&row.ptype) else {
        tracing::warn!(id = row.id, ptype = %row.ptype, "skipping casbin rule of unknown type");
        return;
    };
    let mut values = vec![row.v0, row.v1, row.v2, row.v3, row.v4, row.v5];
    if values[index] != row.company_id.hyphenated().to_string() {
        tracing::warn!(
            id = row.id,
            company_id = %row.company_id,
            "skipping casbin rule whose domain is not its company"
        );
        return;
    }
    // `p` and `g` are one ASCII byte, checked by `domain_index`.
    let sec = &row.ptype[..1];
    let stored_len = values
        .iter()
        .rposition(|value| !value.is_empty())
        .map_or(0, |last| last + 1);
    // Trailing empty values were padding, unless the model says the rule is that long.
    let len = model_rule_len(m, sec, &row.ptype)
        .filter(|len| *len <= VALUE_COLUMNS)
        .map_or(stored_len, |len| len.max(stored_len));
    values.truncate(len);
    m.add_policy(sec, &row.ptype, values);
}

/// Rows of one section (`p` or `g`) that a casbin filter keeps, or `None` if none can match.
fn section_condition(sec: &str, filter: &[&str]) -> Option<Condition> {
    let mut condition = Condition::all().add(Column::Ptype.starts_with(sec));
    let domain = domain_index(sec).ok();
    for (index, value) in filter.iter().enumerate() {
        if value.is_empty() {
            continue;
        }
        condition = condition.add(value_column(index)?.eq(*value));
        if Some(index) == domain {
            // Stored domains are all canonical company ids; anything else matches nothing.
            condition = condition.add(Column::CompanyId.eq(parse_domain(value)?));
        }
    }
    Some(condition)
}

#[async_trait]
impl Adapter for SeaOrmAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        let rows = CasbinRule::find()
            .order_by_asc(Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in rows {
            load_row(m, row);
        }
        self.is_filtered = false;
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        m: &mut dyn Model,
        f: Filter<'a>,
    ) -> casbin::Result<()> {
        let sections: Vec<Condition> = [("p", &f.p), ("g", &f.g)]
            .into_iter()
            .filter_map(|(sec, filter)| section_condition(sec, filter))
            .collect();
        // Conservative: any non-empty filter value marks the model as partial, so that
        // `save_policy` (which would replace the whole table) is refused by casbin.
        self.is_filtered = f.p.iter().chain(f.g.iter()).any(|value| !value.is_empty());
        if sections.is_empty() {
            return Ok(());
        }
        let condition = sections.into_iter().fold(Condition::any(), Condition::add);
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        let rows = CasbinRule::find()
            .filter(condition)
            .order_by_asc(Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in rows {
            load_row(m, row);
        }
        Ok(())
    }

    async fn save_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let mut rules = Vec::new();
        for sec in ["p", "g"] {
            let Some(assertions) = m.get_model().get(sec) else {
                continue;
            };
            for (ptype, assertion) in assertions {
                for rule in assertion.get_policy() {
                    rules.push(StoredRule::new(ptype, rule).map_err(rule_error)?);
                }
            }
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        CasbinRule::delete_many()
            .exec(&txn)
            .await
            .map_err(db_error)?;
        insert_rules(&txn, rules).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        CasbinRule::delete_many()
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        self.is_filtered = false;
        Ok(())
    }

    fn is_filtered(&self) -> bool {
        self.is_filtered
    }

    async fn add_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        let rule = StoredRule::new(ptype, &rule).map_err(rule_error)?;
        let inserted = insert_rules(&self.db, vec![rule]).await.map_err(db_error)?;
        Ok(inserted > 0)
    }

    async fn add_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let rules = StoredRule::many(ptype, &rules).map_err(rule_error)?;
        let expected = rules.len() as u64;
        let txn = self.db.begin().await.map_err(db_error)?;
        let inserted = insert_rules(&txn, rules).await.map_err(db_error)?;
        // All or nothing, as casbin's own adapters: one rule already present adds none.
        if inserted != expected {
            txn.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn remove_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        let rule = StoredRule::new(ptype, &rule).map_err(rule_error)?;
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        let result = CasbinRule::delete_many()
            .filter(rule.condition())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }

    async fn remove_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let rules = StoredRule::many(ptype, &rules).map_err(rule_error)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        for rule in &rules {
            #[allow(clippy::disallowed_methods)]
            // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
            let result = CasbinRule::delete_many()
                .filter(rule.condition())
                .exec(&txn)
                .await
                .map_err(db_error)?;
            // All or nothing: one rule missing removes none.
            if result.rows_affected == 0 {
                txn.rollback().await.map_err(db_error)?;
                return Ok(false);
            }
        }
        txn.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        field_index: usize,
        field_values: Vec<String>,
    ) -> casbin::Result<bool> {
        if field_values.is_empty() {
            return Ok(false);
        }
        let domain = domain_index(ptype).map_err(rule_error)?;
        let mut condition = Condition::all().add(Column::Ptype.eq(ptype));
        for (offset, value) in field_values.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let index = field_index + offset;
            let column = value_column(index).ok_or_else(|| {
                rule_error(RuleError::FieldOutOfRange {
                    ptype: ptype.to_owned(),
                    index,
                })
            })?;
            condition = condition.add(column.eq(value.as_str()));
            if index == domain {
                match parse_domain(value) {
                    Some(company_id) => {
                        condition = condition.add(Column::CompanyId.eq(company_id));
                    }
                    // No stored rule has a domain that is not a company id.
                    None => return Ok(false),
                }
            }
        }
        #[allow(clippy::disallowed_methods)]
        // cross-tenant: casbin's adapter keeps every company's rules; domains scope them
        let result = CasbinRule::delete_many()
            .filter(condition)
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected > 0)
    }
}

#[cfg(test)]
// The tests check the stored rules of every company as they are.
#[allow(clippy::disallowed_methods)]
mod tests {
    use casbin::{CoreApi, DefaultModel, Enforcer, MgmtApi};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{
        ActiveValue::Set, ConnectOptions, Database, DatabaseConnection, EntityTrait,
        PaginatorTrait, QueryOrder,
    };
    use uuid::Uuid;

    use super::{CasbinRule, Column, MODEL, RuleError, SeaOrmAdapter};

    struct Fixture {
        db: DatabaseConnection,
        company_a: String,
        company_b: String,
    }

    /// A fresh in-memory database with the schema and two companies. One connection, because
    /// every connection to `sqlite::memory:` would otherwise open its own empty database.
    async fn fixture() -> Fixture {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options
            .max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        let db = Database::connect(options).await.expect("connect to SQLite");
        Migrator::up(&db, None).await.expect("migrate");
        let mut ids = Vec::new();
        for slug in ["company-a", "company-b"] {
            let id = Uuid::new_v4();
            let now = chrono::Utc::now();
            entity::company::Entity::insert(entity::company::ActiveModel {
                id: Set(id),
                name: Set(slug.to_owned()),
                slug: Set(slug.to_owned()),
                business_type: Set("RESTAURANT".to_owned()),
                locale: Set("pt-BR".to_owned()),
                timezone: Set("America/Sao_Paulo".to_owned()),
                currency: Set("BRL".to_owned()),
                status: Set("ACTIVE".to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .exec_without_returning(&db)
            .await
            .expect("insert company");
            ids.push(id.to_string());
        }
        Fixture {
            db,
            company_b: ids.pop().expect("two companies"),
            company_a: ids.pop().expect("two companies"),
        }
    }

    async fn enforcer(db: &DatabaseConnection) -> Enforcer {
        let model = DefaultModel::from_str(MODEL).await.expect("model parses");
        Enforcer::new(model, SeaOrmAdapter::new(db.clone()))
            .await
            .expect("enforcer loads")
    }

    fn rule(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    /// Every stored row as `[ptype, v0, .., v5]` with trailing empties trimmed, in insert order.
    async fn stored(db: &DatabaseConnection) -> Vec<Vec<String>> {
        CasbinRule::find()
            .order_by_asc(Column::Id)
            .all(db)
            .await
            .expect("read casbin_rule")
            .into_iter()
            .map(|row| {
                let mut values = vec![row.ptype, row.v0, row.v1, row.v2, row.v3, row.v4, row.v5];
                while values.last().is_some_and(String::is_empty) {
                    values.pop();
                }
                values
            })
            .collect()
    }

    fn is_rule_error(error: &casbin::Error) -> bool {
        matches!(error, casbin::Error::AdapterError(inner) if inner.0.downcast_ref::<RuleError>().is_some())
    }

    #[tokio::test]
    async fn policies_added_through_the_enforcer_persist_for_a_new_enforcer() {
        let f = fixture().await;
        let mut e = enforcer(&f.db).await;
        assert!(
            e.add_policy(rule(&["manager", &f.company_a, "orders", "*"]))
                .await
                .expect("add p")
        );
        assert!(
            e.add_grouping_policy(rule(&["alice", "manager", &f.company_a]))
                .await
                .expect("add g")
        );
        // Already stored: the adapter says so and casbin reports false.
        assert!(
            !e.add_policy(rule(&["manager", &f.company_a, "orders", "*"]))
                .await
                .expect("add p again")
        );
        assert_eq!(stored(&f.db).await.len(), 2);

        let fresh = enforcer(&f.db).await;
        assert_eq!(
            fresh.get_policy(),
            vec![rule(&["manager", &f.company_a, "orders", "*"])]
        );
        assert_eq!(
            fresh.get_grouping_policy(),
            vec![rule(&["alice", "manager", &f.company_a])]
        );
        assert!(
            fresh
                .enforce(("alice", f.company_a.as_str(), "orders", "delete"))
                .expect("enforce")
        );
        assert!(
            !fresh
                .enforce(("alice", f.company_a.as_str(), "invoices", "read"))
                .expect("enforce")
        );
        assert!(
            !fresh
                .enforce(("bob", f.company_a.as_str(), "orders", "read"))
                .expect("enforce")
        );
    }

    #[tokio::test]
    async fn a_role_in_one_company_grants_nothing_in_another() {
        let f = fixture().await;
        let mut e = enforcer(&f.db).await;
        e.add_policy(rule(&["manager", &f.company_a, "*", "*"]))
            .await
            .expect("add p in A");
        e.add_policy(rule(&["manager", &f.company_b, "*", "*"]))
            .await
            .expect("add p in B");
        e.add_grouping_policy(rule(&["alice", "manager", &f.company_a]))
            .await
            .expect("add g in A");

        let fresh = enforcer(&f.db).await;
        assert!(
            fresh
                .enforce(("alice", f.company_a.as_str(), "orders", "read"))
                .expect("enforce")
        );
        assert!(
            !fresh
                .enforce(("alice", f.company_b.as_str(), "orders", "read"))
                .expect("enforce")
        );
        assert!(
            !fresh
                .enforce(("alice", "*", "orders", "read"))
                .expect("enforce")
        );
    }

    #[tokio::test]
    async fn rules_whose_domain_is_not_a_company_are_refused_and_not_stored() {
        let f = fixture().await;
        let mut e = enforcer(&f.db).await;
        let upper = f.company_a.to_uppercase();
        for domain in ["*", "", "company-a", upper.as_str()] {
            let error = e
                .add_policy(rule(&["manager", domain, "*", "*"]))
                .await
                .expect_err("p with a bad domain is refused");
            assert!(is_rule_error(&error), "{domain:?}: {error}");
            let error = e
                .add_grouping_policy(rule(&["alice", "manager", domain]))
                .await
                .expect_err("g with a bad domain is refused");
            assert!(is_rule_error(&error), "{domain:?}: {error}");
        }
        // Too short to have a domain at all.
        let error = e
            .add_grouping_policy(rule(&["alice", "manager"]))
            .await
            .expect_err("g without a domain is refused");
        assert!(is_rule_error(&error), "{error}");
        // One bad rule in a batch refuses the whole batch.
        let error = e
            .add_policies(vec![
                rule(&["manager", &f.company_a, "orders", "read"]),
                rule(&["manager", "*", "orders", "read"]),
            ])
            .await
            .expect_err("a batch with a bad domain is refused");
        assert!(is_rule_error(&error), "{error}");
        // A well-formed id of a company that does not exist fails on the foreign key.
        let stranger = Uuid::new_v4().to_string();
        e.add_policy(rule(&["manager", &stranger, "*", "*"]))
            .await
            .expect_err("an unknown company is refused by the foreign key");

        assert!(stored(&f.db).await.is_empty());
        assert!(e.get_policy().is_empty());
        assert!(e.get_grouping_policy().is_empty());
        assert!(
            !e.enforce(("alice", f.company_a.as_str(), "orders", "read"))
                .expect("enforce")
        );
    }

    #[tokio::test]
    async fn removals_remove_exactly_their_rules() {
        let f = fixture().await;
        let (a, b) = (f.company_a.as_str(), f.company_b.as_str());
        let mut e = enforcer(&f.db).await;
        assert!(
            e.add_policies(vec![
                rule(&["manager", a, "orders", "read"]),
                rule(&["manager", a, "orders", "write"]),
                rule(&["cashier", a, "orders", "read"]),
                rule(&["manager", b, "orders", "read"]),
            ])
            .await
            .expect("add p")
        );
        assert!(
            e.add_grouping_policies(vec![
                rule(&["alice", "manager", a]),
                rule(&["alice", "manager", b]),
                rule(&["bob", "cashier", a]),
            ])
            .await
            .expect("add g")
        );

        assert!(
            e.remove_policy(rule(&["manager", a, "orders", "write"]))
                .await
                .expect("remove p")
        );
        assert!(
            !e.remove_policy(rule(&["manager", a, "orders", "write"]))
                .await
                .expect("remove p again")
        );
        // Everything about company A's manager role, by sub and domain.
        assert!(
            e.remove_filtered_policy(0, rule(&["manager", a]))
                .await
                .expect("remove filtered p")
        );
        // Alice's grants in company B only, with a wildcard for the role.
        assert!(
            e.remove_filtered_grouping_policy(0, rule(&["alice", "", b]))
                .await
                .expect("remove filtered g")
        );
        // A filter on a domain that cannot exist removes nothing.
        assert!(
            !e.remove_filtered_policy(1, rule(&["*"]))
                .await
                .expect("remove filtered by *")
        );

        assert_eq!(
            stored(&f.db).await,
            vec![
                rule(&["p", "cashier", a, "orders", "read"]),
                rule(&["p", "manager", b, "orders", "read"]),
                rule(&["g", "alice", "manager", a]),
                rule(&["g", "bob", "cashier", a]),
            ]
        );
        let fresh = enforcer(&f.db).await;
        assert_eq!(fresh.get_policy(), e.get_policy());
        assert_eq!(fresh.get_grouping_policy(), e.get_grouping_policy());
        assert!(
            !fresh
                .enforce(("alice", a, "orders", "read"))
                .expect("enforce")
        );
        assert!(
            !fresh
                .enforce(("alice", b, "orders", "read"))
                .expect("enforce")
        );
        assert!(
            fresh
                .enforce(("bob", a, "orders", "read"))
                .expect("enforce")
        );

        // remove_policies is all or nothing.
        assert!(
            !e.remove_policies(vec![
                rule(&["cashier", a, "orders", "read"]),
                rule(&["cashier", a, "orders", "write"]),
            ])
            .await
            .expect("remove a batch with a missing rule")
        );
        assert_eq!(stored(&f.db).await.len(), 4);
        assert!(
            e.remove_grouping_policies(vec![
                rule(&["alice", "manager", a]),
                rule(&["bob", "cashier", a]),
            ])
            .await
            .expect("remove g batch")
        );
        assert_eq!(
            stored(&f.db).await,
            vec![
                rule(&["p", "cashier", a, "orders", "read"]),
                rule(&["p", "manager", b, "orders", "read"]),
            ]
        );
    }

    #[tokio::test]
    async fn add_policies_is_all_or_nothing() {
        let f = fixture().await;
        let a = f.company_a.as_str();
        let mut e = enforcer(&f.db).await;
        e.add_policy(rule(&["manager", a, "orders", "read"]))
            .await
            .expect("add p");
        assert!(
            !e.add_policies(vec![
                rule(&["manager", a, "orders", "write"]),
                rule(&["manager", a, "orders", "read"]),
            ])
            .await
            .expect("add a batch with a present rule")
        );
        assert_eq!(
            stored(&f.db).await,
            vec![rule(&["p", "manager", a, "orders", "read"])]
        );
        assert_eq!(
            e.get_policy(),
            vec![rule(&["manager", a, "orders", "read"])]
        );
    }

    #[tokio::test]
    async fn save_policy_round_trips() {
        let f = fixture().await;
        let (a, b) = (f.company_a.as_str(), f.company_b.as_str());
        let mut e = enforcer(&f.db).await;
        e.add_policy(rule(&["stale", a, "x", "y"]))
            .await
            .expect("add p");

        // Build the wanted state in memory only, then save it in one go.
        e.enable_auto_save(false);
        e.clear_policy().await.expect("clear in memory");
        assert_eq!(
            stored(&f.db).await.len(),
            1,
            "auto-save off: table untouched"
        );
        let policies = vec![
            rule(&["manager", a, "*", "*"]),
            rule(&["cashier", a, "orders", "read"]),
            // An empty last value must come back as a value, not be trimmed away.
            rule(&["viewer", b, "reports", ""]),
        ];
        let grants = vec![rule(&["alice", "manager", a]), rule(&["bob", "viewer", b])];
        e.add_policies(policies.clone()).await.expect("add p");
        e.add_grouping_policies(grants.clone())
            .await
            .expect("add g");
        e.save_policy().await.expect("save");

        assert_eq!(stored(&f.db).await.len(), 5);
        let fresh = enforcer(&f.db).await;
        assert_eq!(fresh.get_policy(), policies);
        assert_eq!(fresh.get_grouping_policy(), grants);
        assert!(
            fresh
                .enforce(("alice", a, "invoices", "void"))
                .expect("enforce")
        );
        assert!(!fresh.enforce(("alice", b, "reports", "")).expect("enforce"));
        assert!(fresh.enforce(("bob", b, "reports", "")).expect("enforce"));

        // A model holding a rule the store refuses is not saved, and the table is kept.
        e.add_policy(rule(&["manager", "*", "*", "*"]))
            .await
            .expect("add in memory");
        let error = e.save_policy().await.expect_err("save refuses a * domain");
        assert!(is_rule_error(&error), "{error}");
        assert_eq!(stored(&f.db).await.len(), 5);
    }

    #[tokio::test]
    async fn filtered_load_reads_one_company_and_clear_removes_everything() {
        let f = fixture().await;
        let (a, b) = (f.company_a.as_str(), f.company_b.as_str());
        let mut e = enforcer(&f.db).await;
        e.add_policies(vec![
            rule(&["manager", a, "*", "*"]),
            rule(&["manager", b, "*", "*"]),
        ])
        .await
        .expect("add p");
        e.add_grouping_policies(vec![
            rule(&["alice", "manager", a]),
            rule(&["alice", "manager", b]),
        ])
        .await
        .expect("add g");

        e.load_filtered_policy(casbin::Filter {
            p: vec!["", a],
            g: vec!["", "", a],
        })
        .await
        .expect("filtered load");
        assert!(e.is_filtered());
        assert_eq!(e.get_policy(), vec![rule(&["manager", a, "*", "*"])]);
        assert_eq!(
            e.get_grouping_policy(),
            vec![rule(&["alice", "manager", a])]
        );
        assert!(e.enforce(("alice", a, "orders", "read")).expect("enforce"));
        assert!(!e.enforce(("alice", b, "orders", "read")).expect("enforce"));

        e.load_policy().await.expect("full load");
        assert!(!e.is_filtered());
        assert_eq!(e.get_policy().len(), 2);
        assert_eq!(CasbinRule::find().count(&f.db).await.expect("count"), 4);

        e.clear_policy().await.expect("clear");
        assert!(stored(&f.db).await.is_empty());
        assert!(enforcer(&f.db).await.get_policy().is_empty());
    }
}
