//! The job runtime on the app's database: runtimes built here play the instances (each on its
//! own pool, as a server's is), some on a shared manual clock so time moves without sleeping.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use api::jobs::{
    Clock, Enqueue, Finish, Job, Jobs, KeyLimit, ManualClock, Rate, Recurring, RetryPolicy,
    Runtime, RuntimeSettings, Status, SystemClock,
};
use entity::job;
use sea_orm::{DatabaseBackend, EntityTrait, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

#[derive(Serialize, Deserialize)]
struct Step {
    number: u32,
}

impl Job for Step {
    const QUEUE: &'static str = "test.step";
}

/// A runtime running on its own task; dropping it without [`Instance::stop`] is not a stop.
struct Instance {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Instance {
    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.expect("the runtime ends cleanly");
    }

    /// As `kill -9`: the runtime and its running handlers vanish mid-work.
    async fn kill(self) {
        self.task.abort();
        assert!(self.task.await.is_err_and(|error| error.is_cancelled()));
    }
}

fn fast(max_in_flight: usize) -> RuntimeSettings {
    RuntimeSettings {
        max_in_flight,
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(20),
        ..RuntimeSettings::default()
    }
}

async fn runtime(app: &TestApp, settings: RuntimeSettings, clock: Arc<dyn Clock>) -> Runtime {
    let pool = api::db::connect_with(&app.settings, api::db::Role::CrossTenant, 4)
        .await
        .expect("a pool of the instance's own");
    Runtime::with_clock(pool, settings, clock)
}

fn start(runtime: Runtime) -> Instance {
    let (stop, stopped) = watch::channel(false);
    Instance {
        stop,
        task: tokio::spawn(runtime.run(stopped)),
    }
}

/// A handler that records the numbers it ran, in order.
fn recording(runtime: &mut Runtime, retry: RetryPolicy) -> Arc<Mutex<Vec<u32>>> {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let record = ran.clone();
    runtime.handle(retry, move |_, step: Step| {
        record.lock().expect("not poisoned").push(step.number);
        async { Ok(()) }
    });
    ran
}

fn ran(record: &Mutex<Vec<u32>>) -> Vec<u32> {
    record.lock().expect("not poisoned").clone()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn row(app: &TestApp, id: Uuid) -> job::Model {
    job::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("a query")
        .expect("the job's row")
}

#[tokio::test]
async fn due_jobs_run_best_priority_first_then_oldest_first() {
    let app = spawn_app().await;
    let clock = Arc::new(SystemClock);
    let mut runtime = runtime(&app, fast(1), clock).await;
    let ran_in_order = recording(&mut runtime, RetryPolicy::default());
    let jobs = runtime.jobs();
    let now = jobs.now();
    for (number, priority, age) in [(1, 0, 5), (2, 10, 1), (3, 5, 3), (4, 10, 4), (5, -1, 9)] {
        jobs.enqueue(
            &app.db,
            &Step { number },
            Enqueue::default()
                .priority(priority)
                .run_at(now - chrono::Duration::seconds(age)),
        )
        .await
        .expect("enqueued");
    }
    let instance = start(runtime);
    eventually("all ran", || ran(&ran_in_order).len() == 5).await;
    instance.stop().await;

    assert_eq!(ran(&ran_in_order), [4, 2, 3, 1, 5]);
}

#[tokio::test]
async fn a_job_scheduled_for_later_waits_for_its_time() {
    let app = spawn_app().await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let mut runtime = runtime(&app, fast(4), Arc::new(clock.clone())).await;
    let ran_steps = recording(&mut runtime, RetryPolicy::default());
    let jobs = runtime.jobs();
    jobs.enqueue(
        &app.db,
        &Step { number: 1 },
        Enqueue::default().run_at(jobs.now() + chrono::Duration::minutes(10)),
    )
    .await
    .expect("enqueued");
    let instance = start(runtime);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ran(&ran_steps);
    clock.advance(chrono::Duration::minutes(9) + chrono::Duration::seconds(59));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_second_early = ran(&ran_steps);
    clock.advance(chrono::Duration::seconds(1));
    eventually("the job ran at its time", || ran(&ran_steps) == [1]).await;
    instance.stop().await;

    assert!(before.is_empty(), "{before:?}");
    assert!(a_second_early.is_empty(), "{a_second_early:?}");
}

#[tokio::test]
async fn a_rate_limited_key_never_starts_more_than_its_rate_across_instances() {
    let app = spawn_app().await;
    let rate = Rate {
        count: 4,
        per: Duration::from_millis(500),
    };
    // When each handler began (wall clock) and when its claim started it (the runtime's clock,
    // what the limit counts), across both instances.
    let starts = Arc::new(Mutex::new(
        Vec::<(Instant, chrono::DateTime<chrono::Utc>)>::new(),
    ));
    let mut instances = Vec::new();
    let mut jobs = None;
    for _ in 0..2 {
        let mut runtime = runtime(&app, fast(8), Arc::new(SystemClock)).await;
        let record = starts.clone();
        runtime
            .limit(
                "whatsapp",
                KeyLimit {
                    concurrency: None,
                    rate: Some(rate),
                    per_instance: false,
                },
            )
            .handle(RetryPolicy::default(), move |job, _: Step| {
                record
                    .lock()
                    .expect("not poisoned")
                    .push((Instant::now(), job.started_at));
                async { Ok(()) }
            });
        jobs.get_or_insert(runtime.jobs());
        instances.push(start(runtime));
    }
    let jobs = jobs.expect("a handle");
    let began = Instant::now();
    for number in 0..16 {
        jobs.enqueue(
            &app.db,
            &Step { number },
            Enqueue::default().key("whatsapp:instance-1"),
        )
        .await
        .expect("enqueued");
    }
    eventually("all 16 started", || {
        starts.lock().expect("not poisoned").len() == 16
    })
    .await;
    let took = began.elapsed();
    for instance in instances {
        instance.stop().await;
    }

    let starts = starts.lock().expect("not poisoned").clone();
    let mut began_at: Vec<Instant> = starts.iter().map(|(began, _)| *began).collect();
    began_at.sort();
    let mut claimed_at: Vec<chrono::DateTime<chrono::Utc>> =
        starts.iter().map(|(_, claimed)| *claimed).collect();
    claimed_at.sort();
    let per = chrono::Duration::from_std(rate.per).expect("a short interval");
    let tightest_claims = claimed_at
        .windows(rate.count + 1)
        .map(|window| window[rate.count] - window[0])
        .min()
        .expect("more starts than the rate");
    // As the handlers saw it: a few milliseconds allowed between the claim and the handler's
    // first line.
    let tightest = began_at
        .windows(rate.count + 1)
        .map(|window| window[rate.count] - window[0])
        .min()
        .expect("more starts than the rate");
    println!(
        "{} consecutive starts spanned at least {tightest:?} (claims {tightest_claims}); 16 took {took:?}",
        rate.count + 1
    );
    assert!(
        tightest_claims >= per,
        "{} claims within {tightest_claims}",
        rate.count + 1
    );
    assert!(
        tightest + Duration::from_millis(25) >= rate.per,
        "{} starts within {tightest:?}",
        rate.count + 1
    );
    assert!(
        took >= rate.per * 3,
        "16 starts at 4 per 500 ms took {took:?}"
    );
}

#[tokio::test]
async fn a_key_limited_to_one_at_a_time_never_runs_two_across_instances() {
    let app = spawn_app().await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut instances = Vec::new();
    let mut jobs = None;
    for _ in 0..2 {
        let mut runtime = runtime(&app, fast(8), Arc::new(SystemClock)).await;
        let (running, most, done) = (running.clone(), most.clone(), done.clone());
        runtime
            .limit(
                "company",
                KeyLimit {
                    concurrency: Some(1),
                    rate: None,
                    per_instance: false,
                },
            )
            .handle(RetryPolicy::default(), move |_, _: Step| {
                let (running, most, done) = (running.clone(), most.clone(), done.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            });
        jobs.get_or_insert(runtime.jobs());
        instances.push(start(runtime));
    }
    let jobs = jobs.expect("a handle");
    for number in 0..12 {
        jobs.enqueue(
            &app.db,
            &Step { number },
            Enqueue::default().key("company:one"),
        )
        .await
        .expect("enqueued");
    }
    eventually("all 12 ran", || done.load(Ordering::SeqCst) == 12).await;
    for instance in instances {
        instance.stop().await;
    }

    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_job_of_a_killed_worker_runs_again_once_its_lease_expires() {
    let app = spawn_app().await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let started = Arc::new(tokio::sync::Notify::new());
    let mut doomed = runtime(&app, fast(4), Arc::new(clock.clone())).await;
    let signal = started.clone();
    doomed.handle(RetryPolicy::default(), move |_, _: Step| {
        signal.notify_one();
        std::future::pending()
    });
    let jobs = doomed.jobs();
    let id = jobs
        .enqueue(&app.db, &Step { number: 1 }, Enqueue::default())
        .await
        .expect("enqueued");
    let doomed = start(doomed);
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the first worker started the job");
    doomed.kill().await;

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut survivor = runtime(&app, fast(4), Arc::new(clock.clone())).await;
    let record = attempts.clone();
    survivor.handle(RetryPolicy::default(), move |job, _: Step| {
        record.lock().expect("not poisoned").push(job.attempt);
        async { Ok(()) }
    });
    let survivor = start(survivor);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let while_leased = attempts.lock().expect("not poisoned").clone();
    clock.advance(chrono::Duration::seconds(4));
    eventually("the job ran again", || {
        !attempts.lock().expect("not poisoned").is_empty()
    })
    .await;
    survivor.stop().await;

    assert!(while_leased.is_empty(), "{while_leased:?}");
    assert_eq!(*attempts.lock().expect("not poisoned"), [2]);
    assert_eq!(row(&app, id).await.status, Status::Done.as_str());
}

/// Two runtimes with 200 jobs between them: every job runs once, never on both at a time.
async fn two_instances_share_jobs_and_never_run_one_twice(app: &TestApp) {
    let running = Arc::new(Mutex::new(HashSet::<Uuid>::new()));
    let runs = Arc::new(Mutex::new(HashMap::<Uuid, usize>::new()));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let by_instance = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut instances = Vec::new();
    let mut jobs = None;
    for counter in &by_instance {
        let mut runtime = runtime(app, fast(8), Arc::new(SystemClock)).await;
        let (running, runs, overlaps, counter) = (
            running.clone(),
            runs.clone(),
            overlaps.clone(),
            counter.clone(),
        );
        runtime.handle(RetryPolicy::default(), move |job, _: Step| {
            let (running, runs, overlaps, counter) = (
                running.clone(),
                runs.clone(),
                overlaps.clone(),
                counter.clone(),
            );
            async move {
                if !running.lock().expect("not poisoned").insert(job.id) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.lock().expect("not poisoned").remove(&job.id);
                *runs
                    .lock()
                    .expect("not poisoned")
                    .entry(job.id)
                    .or_default() += 1;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        jobs.get_or_insert(runtime.jobs());
        instances.push(start(runtime));
    }
    let jobs = jobs.expect("a handle");
    let mut ids = Vec::new();
    for number in 0..200 {
        ids.push(
            jobs.enqueue(&app.db, &Step { number }, Enqueue::default())
                .await
                .expect("enqueued"),
        );
    }
    eventually("all 200 ran", || {
        runs.lock().expect("not poisoned").len() == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for instance in instances {
        instance.stop().await;
    }

    let runs = runs.lock().expect("not poisoned").clone();
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert!(runs.values().all(|count| *count == 1), "{runs:?}");
    assert!(ids.iter().all(|id| runs.contains_key(id)));
    let shares = by_instance
        .each_ref()
        .map(|counter| counter.load(Ordering::SeqCst));
    assert!(
        shares.iter().all(|share| *share > 0),
        "both instances worked: {shares:?}"
    );
}

#[tokio::test]
async fn two_instances_never_run_one_job_at_once() {
    two_instances_share_jobs_and_never_run_one_twice(&spawn_app().await).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn two_instances_on_postgres_claim_with_skip_locked_and_never_run_one_job_at_once() {
    let app = spawn_app().await;
    assert_eq!(
        app.db.get_database_backend(),
        DatabaseBackend::Postgres,
        "this test needs TEST_DATABASE_URL"
    );
    two_instances_share_jobs_and_never_run_one_twice(&app).await;
}

#[tokio::test]
async fn enqueuing_one_idempotency_key_twice_makes_one_job_and_commits_with_the_caller() {
    let app = spawn_app().await;
    let jobs = Jobs::new(Arc::new(SystemClock));
    let key = || Enqueue::default().idempotency_key("order:42:receipt");
    let first = jobs
        .enqueue(&app.db, &Step { number: 1 }, key())
        .await
        .expect("enqueued");
    let again = jobs
        .enqueue(&app.db, &Step { number: 2 }, key())
        .await
        .expect("enqueued again");

    let rolled_back = app.db.begin().await.expect("a transaction");
    let discarded = jobs
        .enqueue(
            &rolled_back,
            &Step { number: 3 },
            Enqueue::default().idempotency_key("rolled-back"),
        )
        .await
        .expect("enqueued in the transaction");
    rolled_back.rollback().await.expect("rolled back");
    let committed = app.db.begin().await.expect("a transaction");
    let kept = jobs
        .enqueue(
            &committed,
            &Step { number: 4 },
            Enqueue::default().idempotency_key("committed"),
        )
        .await
        .expect("enqueued in the transaction");
    committed.commit().await.expect("committed");

    assert_eq!(first, again);
    let rows = job::Entity::find().all(&app.db).await.expect("jobs");
    let mut ids: Vec<Uuid> = rows
        .iter()
        .filter(|row| row.queue == Step::QUEUE)
        .map(|row| row.id)
        .collect();
    ids.sort();
    let mut expected = vec![first, kept];
    expected.sort();
    assert_eq!(ids, expected, "the rolled-back {discarded} left nothing");
    assert_eq!(row(&app, first).await.payload, r#"{"number":1}"#);
}

#[tokio::test]
async fn a_job_failing_every_attempt_follows_its_retry_schedule_then_is_dead_with_its_last_error() {
    let app = spawn_app().await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let mut runtime = runtime(&app, fast(4), Arc::new(clock.clone())).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    runtime.handle(
        RetryPolicy {
            max_attempts: 3,
            first_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(3600),
            jitter: 0.2,
        },
        move |job, _: Step| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { anyhow::bail!("attempt {} failed", job.attempt) }
        },
    );
    let jobs = runtime.jobs();
    let id = jobs
        .enqueue(&app.db, &Step { number: 1 }, Enqueue::default())
        .await
        .expect("enqueued");
    let instance = start(runtime);
    let mut waits = Vec::new();
    for attempt in 1..=2 {
        eventually("the attempt failed", || {
            attempts.load(Ordering::SeqCst) == attempt
        })
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let failed = loop {
            let failed = row(&app, id).await;
            if failed.status == Status::Queued.as_str() {
                break failed;
            }
            assert!(Instant::now() < deadline, "{failed:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            failed.last_error.as_deref(),
            Some(format!("attempt {attempt} failed").as_str())
        );
        waits.push((failed.run_at - clock.now()).num_seconds());
        // Not a moment before the retry is due.
        clock.advance(failed.run_at - clock.now() - chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), attempt);
        clock.advance(chrono::Duration::seconds(1));
    }
    eventually("the last attempt failed", || {
        attempts.load(Ordering::SeqCst) == 3
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = row(&app, id).await;
        if dead.status == Status::Dead.as_str() {
            break dead;
        }
        assert!(Instant::now() < deadline, "{dead:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    clock.advance(chrono::Duration::days(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    instance.stop().await;

    assert!(
        (48..=72).contains(&waits[0]),
        "first wait 60 s ± 20 %: {waits:?}"
    );
    assert!(
        (96..=144).contains(&waits[1]),
        "second wait 120 s ± 20 %: {waits:?}"
    );
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error.as_deref(), Some("attempt 3 failed"));
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "a dead job stays dead");
}

#[tokio::test]
async fn a_paused_key_holds_its_jobs_until_it_is_resumed() {
    let app = spawn_app().await;
    let mut runtime = runtime(&app, fast(4), Arc::new(SystemClock)).await;
    let ran_steps = recording(&mut runtime, RetryPolicy::default());
    let jobs = runtime.jobs();
    jobs.pause_key(&app.db, "whatsapp:instance-1")
        .await
        .expect("paused");
    jobs.enqueue(
        &app.db,
        &Step { number: 1 },
        Enqueue::default().key("whatsapp:instance-1"),
    )
    .await
    .expect("enqueued");
    jobs.enqueue(
        &app.db,
        &Step { number: 2 },
        Enqueue::default().key("whatsapp:instance-2"),
    )
    .await
    .expect("enqueued");
    let instance = start(runtime);
    eventually("the other key's job ran", || ran(&ran_steps) == [2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let while_paused = ran(&ran_steps);
    jobs.resume_key(&app.db, "whatsapp:instance-1")
        .await
        .expect("resumed");
    eventually("the resumed key's job ran", || ran(&ran_steps) == [2, 1]).await;
    instance.stop().await;

    assert_eq!(while_paused, [2]);
}

#[tokio::test]
async fn a_cancelled_job_never_runs() {
    let app = spawn_app().await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let mut runtime = runtime(&app, fast(4), Arc::new(clock.clone())).await;
    let ran_steps = recording(&mut runtime, RetryPolicy::default());
    let jobs = runtime.jobs();
    let later = jobs.now() + chrono::Duration::minutes(1);
    let cancelled = jobs
        .enqueue(
            &app.db,
            &Step { number: 1 },
            Enqueue::default().run_at(later),
        )
        .await
        .expect("enqueued");
    jobs.enqueue(
        &app.db,
        &Step { number: 2 },
        Enqueue::default().run_at(later),
    )
    .await
    .expect("enqueued");
    let instance = start(runtime);
    let withdrawn = jobs.cancel(&app.db, cancelled).await.expect("cancelled");
    clock.advance(chrono::Duration::minutes(2));
    eventually("the other job ran", || ran(&ran_steps) == [2]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = jobs.cancel(&app.db, cancelled).await.expect("a no-op");
    instance.stop().await;

    assert!(withdrawn);
    assert!(!again, "a cancelled job cannot be cancelled twice");
    assert_eq!(ran(&ran_steps), [2]);
    assert_eq!(
        row(&app, cancelled).await.status,
        Status::Cancelled.as_str()
    );
}

#[derive(Serialize, Deserialize)]
struct Tick;

impl Job for Tick {
    const QUEUE: &'static str = "test.tick";
}

#[tokio::test]
async fn a_recurring_schedule_fires_once_per_tick_across_two_instances() {
    let app = spawn_app().await;
    let clock = ManualClock::starting_at(chrono::Utc::now());
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let mut instances = Vec::new();
    for _ in 0..2 {
        let mut runtime = runtime(&app, fast(4), Arc::new(clock.clone())).await;
        let record = ticks.clone();
        runtime
            .handle(RetryPolicy::default(), move |job, Tick| {
                record.lock().expect("not poisoned").push(job.id);
                async { Ok(()) }
            })
            .schedule(Recurring::new("test.every-minute", "* * * * *", &Tick).expect("valid"));
        runtime.declare_schedules().await.expect("declared");
        instances.push(start(runtime));
    }
    let count = || ticks.lock().expect("not poisoned").len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_the_first_tick = count();
    for tick in 1..=3 {
        clock.advance(chrono::Duration::minutes(1));
        eventually("the tick fired", || count() >= tick).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count(), tick, "one job per tick");
    }
    for instance in instances {
        instance.stop().await;
    }

    assert_eq!(before_the_first_tick, 0);
}

#[tokio::test]
async fn a_busy_keys_backlog_does_not_hold_back_another_keys_job() {
    let app = spawn_app().await;
    let mut runtime = runtime(&app, fast(4), Arc::new(SystemClock)).await;
    let ran_at: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let record = ran_at.clone();
    runtime
        .limit(
            "company",
            KeyLimit {
                concurrency: Some(1),
                rate: None,
                per_instance: false,
            },
        )
        .handle(RetryPolicy::default(), move |_, step: Step| {
            record
                .lock()
                .expect("not poisoned")
                .insert(step.number, Instant::now());
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            }
        });
    let jobs = runtime.jobs();
    let now = jobs.now();
    // More of the busy key's jobs, all older, than one claim reads.
    let txn = app.db.begin().await.expect("a transaction");
    for number in 0..100 {
        jobs.enqueue(
            &txn,
            &Step { number },
            Enqueue::default()
                .key("company:busy")
                .run_at(now - chrono::Duration::seconds(60)),
        )
        .await
        .expect("enqueued");
    }
    jobs.enqueue(
        &txn,
        &Step { number: 1000 },
        Enqueue::default().key("company:other"),
    )
    .await
    .expect("enqueued");
    txn.commit().await.expect("committed");
    let started = Instant::now();
    let instance = start(runtime);
    eventually("the other key's job ran", || {
        ran_at.lock().expect("not poisoned").contains_key(&1000)
    })
    .await;
    let waited = started.elapsed();
    let busy_ran = ran_at.lock().expect("not poisoned").len() - 1;
    instance.stop().await;

    assert!(
        waited < Duration::from_secs(2),
        "the other key waited {waited:?} behind the busy one"
    );
    assert!(busy_ran < 20, "{busy_ran} of the busy key's jobs ran first");
}

#[tokio::test]
async fn a_handler_that_records_its_end_in_its_own_transaction_keeps_that_end() {
    let app = spawn_app().await;
    let mut runtime = runtime(&app, fast(4), Arc::new(SystemClock)).await;
    let db = app.db.clone();
    let jobs = runtime.jobs();
    let handle = jobs.clone();
    let later = jobs.now() + chrono::Duration::hours(1);
    runtime.handle(RetryPolicy::default(), move |context, _: Step| {
        let (db, jobs) = (db.clone(), handle.clone());
        async move {
            let txn = db.begin().await?;
            let finish = Finish::Again {
                at: later,
                error: Some("the receiver answered 503".into()),
            };
            jobs.finish_within(&txn, &[(&context, finish.clone())])
                .await?;
            txn.commit().await?;
            context.finished(&finish);
            Ok(())
        }
    });
    let id = jobs
        .enqueue(&app.db, &Step { number: 1 }, Enqueue::default())
        .await
        .expect("enqueued");
    let instance = start(runtime);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut job = row(&app, id).await;
    while job.attempts == 0 || job.status == Status::Running.as_str() {
        assert!(Instant::now() < deadline, "never ran: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        job = row(&app, id).await;
    }
    // Whatever the runtime writes after the handler returned must not undo the handler's end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = row(&app, id).await;
    instance.stop().await;

    assert_eq!(job.status, Status::Queued.as_str());
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("the receiver answered 503"));
    assert_eq!(job.lease_id, None);
    assert!((job.run_at - later).num_seconds().abs() < 1, "{job:?}");
}

#[tokio::test]
async fn a_rows_job_is_written_once_and_rerun_starts_it_over_after_it_finished() {
    let app = spawn_app().await;
    let mut runtime = runtime(&app, fast(4), Arc::new(SystemClock)).await;
    let ran_steps = recording(&mut runtime, RetryPolicy::default());
    let jobs = runtime.jobs();
    let id = Uuid::now_v7();
    for _ in 0..2 {
        jobs.enqueue_many(&app.db, [(Step { number: 7 }, Enqueue::default().id(id))])
            .await
            .expect("enqueued");
    }
    jobs.wake();
    let instance = start(runtime);
    eventually("it ran", || ran(&ran_steps).len() == 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while row(&app, id).await.status != Status::Done.as_str() {
        assert!(Instant::now() < deadline, "never done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rerun = jobs.rerun(&app.db, id, jobs.now()).await.expect("rerun");
    jobs.wake();
    eventually("it ran again", || ran(&ran_steps).len() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    instance.stop().await;

    assert!(rerun);
    assert_eq!(
        ran(&ran_steps),
        [7, 7],
        "once per enqueue_many id, once per rerun"
    );
    assert_eq!(row(&app, id).await.attempts, 1, "counted from the rerun");
}

#[tokio::test]
async fn a_per_instance_key_limit_frees_a_place_as_soon_as_the_handler_lets_go_of_the_key() {
    let app = spawn_app().await;
    let mut runtime = runtime(&app, fast(8), Arc::new(SystemClock)).await;
    let started: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let record = started.clone();
    runtime
        .limit(
            "endpoint",
            KeyLimit {
                concurrency: Some(1),
                rate: None,
                per_instance: true,
            },
        )
        .handle(RetryPolicy::default(), move |context, step: Step| {
            record
                .lock()
                .expect("not poisoned")
                .insert(step.number, Instant::now());
            async move {
                // Job 0 is done with what the limit is for at once; the others hold on.
                if step.number == 0 {
                    context.release_key();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            }
        });
    let jobs = runtime.jobs();
    let now = jobs.now();
    for number in 0..3 {
        jobs.enqueue(
            &app.db,
            &Step { number },
            Enqueue::default()
                .key("endpoint:a")
                .run_at(now - chrono::Duration::seconds(10 - i64::from(number))),
        )
        .await
        .expect("enqueued");
    }
    let instance = start(runtime);
    eventually("all three started", || {
        started.lock().expect("not poisoned").len() == 3
    })
    .await;
    instance.stop().await;
    let started = started.lock().expect("not poisoned").clone();

    let after_released = started[&1] - started[&0];
    let after_held = started[&2] - started[&1];
    assert!(
        after_released < Duration::from_millis(300),
        "job 1 waited {after_released:?} for a place job 0 gave back"
    );
    assert!(
        after_held >= Duration::from_millis(450),
        "job 2 started {after_held:?} after job 1, which held its place"
    );
}
