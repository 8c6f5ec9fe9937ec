//! Recurring schedules: a cron pattern read in a time zone, and the job each tick enqueues.
//!
//! A schedule is a row with its next tick (`next_run_at`). Every instance's runtime looks for
//! passed ticks; the one that takes the row (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write
//! lock on SQLite) enqueues the tick's job and moves the row to the next tick. The job's
//! idempotency key names the schedule and the tick, so even a tick handled twice makes one job.
//! Ticks missed while no instance ran are not replayed: the next pass runs the work once and
//! moves on to the next tick from now.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use entity::job_schedule;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, LockBehavior, LockType, OnConflict},
};
use uuid::Uuid;

use super::{Enqueue, Job, Jobs, runtime::take_write_lock};

/// Most schedules one pass fires; the next pass takes the rest.
const BATCH: u64 = 100;

/// A recurring job: which, how often, in which zone.
#[derive(Clone, Debug)]
pub struct Recurring {
    name: String,
    pattern: String,
    cron: Cron,
    time_zone: Tz,
    queue: &'static str,
    payload: String,
    company_id: Option<Uuid>,
}

impl Recurring {
    /// `name` identifies the schedule (e.g. `payments.expire-overdue` or
    /// `reminders:{company}`); `pattern` is a cron pattern — five fields, or six with seconds
    /// first — read in UTC unless [`Recurring::in_time_zone`] says otherwise.
    pub fn new<J: Job>(name: impl Into<String>, pattern: &str, job: &J) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.into(),
            pattern: pattern.to_string(),
            cron: parse(pattern)?,
            time_zone: Tz::UTC,
            queue: J::QUEUE,
            payload: serde_json::to_string(job)?,
            company_id: None,
        })
    }

    /// Reads the pattern in `time_zone` (a company's `timezone`): `0 9 * * *` is nine in the
    /// morning there, summer time or not.
    pub fn in_time_zone(mut self, time_zone: Tz) -> Self {
        self.time_zone = time_zone;
        self
    }

    /// The company the schedule's jobs act for.
    pub fn company(mut self, company_id: Uuid) -> Self {
        self.company_id = Some(company_id);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first tick strictly after `after`.
    pub fn next_tick(&self, after: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        next_tick(&self.cron, self.time_zone, after)
    }
}

fn parse(pattern: &str) -> anyhow::Result<Cron> {
    Cron::from_str(pattern)
        .map_err(|error| anyhow::anyhow!("invalid cron pattern {pattern:?}: {error}"))
}

fn next_tick(cron: &Cron, time_zone: Tz, after: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let next = cron
        .find_next_occurrence(&after.with_timezone(&time_zone), false)
        .map_err(|error| anyhow::anyhow!("no next tick for {}: {error}", cron.pattern))?;
    Ok(next.with_timezone(&Utc))
}

impl Jobs {
    /// Creates or updates a recurring schedule. An unchanged schedule keeps its next tick, so
    /// every instance declaring it at start changes nothing; a changed one starts from its next
    /// tick after now.
    pub async fn schedule(
        &self,
        conn: &impl ConnectionTrait,
        recurring: &Recurring,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let row = job_schedule::ActiveModel {
            name: Set(recurring.name.clone()),
            cron: Set(recurring.pattern.clone()),
            time_zone: Set(recurring.time_zone.name().to_string()),
            queue: Set(recurring.queue.to_string()),
            payload: Set(recurring.payload.clone()),
            company_id: Set(recurring.company_id),
            next_run_at: Set(recurring.next_tick(now)?),
            updated_at: Set(now),
        };
        job_schedule::Entity::insert(row.clone())
            .on_conflict(
                OnConflict::column(job_schedule::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        // Only a changed declaration moves the next tick.
        let changed = sea_orm::Condition::any()
            .add(job_schedule::Column::Cron.ne(recurring.pattern.as_str()))
            .add(job_schedule::Column::TimeZone.ne(recurring.time_zone.name()))
            .add(job_schedule::Column::Queue.ne(recurring.queue))
            .add(job_schedule::Column::Payload.ne(recurring.payload.as_str()));
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let update = job_schedule::Entity::update_many()
            .set(row)
            .filter(job_schedule::Column::Name.eq(recurring.name.as_str()))
            .filter(changed);
        update.exec(conn).await?;
        Ok(())
    }

    /// Enqueues the job of every schedule whose tick has passed and moves each to its next
    /// tick; returns how many fired.
    pub(super) async fn fire_due_schedules(
        &self,
        db: &DatabaseConnection,
    ) -> anyhow::Result<usize> {
        let now = self.now();
        let txn = db.begin().await?;
        take_write_lock(&txn).await?;
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let mut due = job_schedule::Entity::find()
            .filter(job_schedule::Column::NextRunAt.lte(now))
            .limit(BATCH);
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let due = due.all(&txn).await?;
        let fired = due.len();
        for schedule in due {
            let tick = schedule.next_run_at;
            let mut options = Enqueue::default().run_at(tick).idempotency_key(format!(
                "schedule:{}:{}",
                schedule.name,
                tick.to_rfc3339()
            ));
            if let Some(company_id) = schedule.company_id {
                options = options.company(company_id);
            }
            self.enqueue_raw(&txn, &schedule.queue, schedule.payload.clone(), options)
                .await?;
            let time_zone = Tz::from_str(&schedule.time_zone)
                .map_err(|error| anyhow::anyhow!("schedule {}: {error}", schedule.name))?;
            let next = next_tick(&parse(&schedule.cron)?, time_zone, now.max(tick))?;
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            job_schedule::Entity::update_many()
                .col_expr(job_schedule::Column::NextRunAt, Expr::value(next))
                .col_expr(job_schedule::Column::UpdatedAt, Expr::value(now))
                .filter(job_schedule::Column::Name.eq(schedule.name))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(fired)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Reminder;

    impl Job for Reminder {
        const QUEUE: &'static str = "test.reminder";
    }

    #[test]
    fn a_pattern_is_read_in_the_schedules_time_zone() {
        let nine_in_sao_paulo = Recurring::new("reminders", "0 9 * * *", &Reminder)
            .expect("valid pattern")
            .in_time_zone(chrono_tz::America::Sao_Paulo);
        let utc_midnight = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
        assert_eq!(
            nine_in_sao_paulo.next_tick(utc_midnight).expect("a tick"),
            Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap(),
            "09:00 at UTC-3"
        );
        let every_minute = Recurring::new("sweep", "* * * * *", &Reminder).expect("valid");
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap();
        assert_eq!(
            every_minute.next_tick(at).expect("a tick"),
            at + chrono::Duration::minutes(1),
            "strictly after"
        );
    }

    #[test]
    fn an_invalid_pattern_is_refused_when_declared() {
        assert!(Recurring::new("broken", "every day", &Reminder).is_err());
    }
}
