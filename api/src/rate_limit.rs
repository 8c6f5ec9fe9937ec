//! Fixed-window rate limits, in Redis when configured (shared by every instance) or in process.
//!
//! When Redis cannot be reached, each limit does what its [`Outage`] says: limits that guard
//! against guessing credentials (login, sign-up, password change — the default) refuse with
//! `RATE_LIMITED` and a short `retryAfter`, because a per-instance count would multiply the
//! attempts an attacker gets by the number of instances; the others (API calls, token refresh)
//! count in this instance's memory until Redis is back, so the API keeps answering. Either way
//! the failure is logged once per outage and counted in `rate_limit_redis_fallbacks_total`.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

use crate::error::{ApiError, ApiResult};

/// One limit: `max` hits per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
    pub outage: Outage,
}

/// What a limit does while Redis, which holds the shared counters, cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Refuse every hit with `RATE_LIMITED` (retry after [`OUTAGE_RETRY_AFTER_SECS`]).
    Refuse,
    /// Count in this instance's memory instead.
    CountPerInstance,
}

/// The `retryAfter` of a hit refused because Redis is unreachable.
pub const OUTAGE_RETRY_AFTER_SECS: u64 = 10;
/// How long limits skip Redis after it failed to answer.
const REDIS_RETRY: Duration = Duration::from_secs(1);

impl Limit {
    /// A limit that refuses while Redis is unreachable, for surfaces where a per-instance count
    /// would let credential guessing through.
    pub const fn per(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            outage: Outage::Refuse,
        }
    }

    /// The same limit, counted per instance while Redis is unreachable.
    pub const fn or_per_instance(self) -> Self {
        Self {
            outage: Outage::CountPerInstance,
            ..self
        }
    }
}

pub enum RateLimiter {
    InProcess(Mutex<HashMap<String, Window>>),
    Redis {
        connection: ConnectionManager,
        namespace: String,
        /// Counts of [`Outage::CountPerInstance`] limits while Redis is unreachable.
        fallback: Mutex<HashMap<String, Window>>,
        /// While Redis is unreachable: when to try it again. Requests in between skip it, so an
        /// outage costs one failed call per [`REDIS_RETRY`], not one per request.
        retry_redis_at: Mutex<Option<Instant>>,
    },
}

pub struct Window {
    started: Instant,
    hits: u32,
    length: Duration,
}

/// Windows kept in process before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    pub fn in_process() -> Self {
        Self::InProcess(Mutex::new(HashMap::new()))
    }

    pub fn redis(connection: ConnectionManager, namespace: &str) -> Self {
        Self::Redis {
            connection,
            namespace: namespace.to_string(),
            fallback: Mutex::new(HashMap::new()),
            retry_redis_at: Mutex::new(None),
        }
    }

    /// Counts one hit on `key`; over the limit → `RATE_LIMITED` with the seconds to wait.
    pub async fn hit(&self, key: &str, limit: Limit) -> ApiResult<()> {
        let (hits, retry_after) = match self {
            Self::InProcess(windows) => Self::hit_in_process(windows, key, limit)?,
            Self::Redis {
                connection,
                namespace,
                fallback,
                retry_redis_at,
            } => {
                let counted = if Self::redis_known_down(retry_redis_at) {
                    None
                } else {
                    let key = format!("{namespace}:rl:{key}");
                    Self::counted_in_redis(connection.clone(), &key, limit, retry_redis_at).await
                };
                match (counted, limit.outage) {
                    (Some(counted), _) => counted,
                    (None, Outage::CountPerInstance) => {
                        metrics::counter!("rate_limit_redis_fallbacks_total", "mode" => "per_instance")
                            .increment(1);
                        Self::hit_in_process(fallback, key, limit)?
                    }
                    (None, Outage::Refuse) => {
                        metrics::counter!("rate_limit_redis_fallbacks_total", "mode" => "refused")
                            .increment(1);
                        return Err(ApiError::RateLimited {
                            retry_after_secs: OUTAGE_RETRY_AFTER_SECS,
                        });
                    }
                }
            }
        };
        if hits > limit.max {
            return Err(ApiError::RateLimited {
                retry_after_secs: retry_after.max(1),
            });
        }
        Ok(())
    }

    /// Takes back one hit on `key` counted by [`Self::hit`] in the current window, for hits
    /// that turn out not to count (a login that succeeded). Counting first and refunding after
    /// keeps concurrent attempts from all passing a check made before any of them is counted.
    pub async fn refund(&self, key: &str) -> ApiResult<()> {
        match self {
            Self::InProcess(windows) => Self::refund_in_process(windows, key),
            Self::Redis {
                connection,
                namespace,
                fallback,
                retry_redis_at,
            } => {
                if Self::redis_known_down(retry_redis_at) {
                    return Self::refund_in_process(fallback, key);
                }
                // Only an open window is decremented: DECR on an expired key would create one
                // with no expiry.
                let script = redis::Script::new(
                    "local hits = tonumber(redis.call('GET', KEYS[1])) \
                     if hits and hits > 0 then return redis.call('DECR', KEYS[1]) end return 0",
                );
                let refunded: Result<i64, _> = script
                    .key(format!("{namespace}:rl:{key}"))
                    .invoke_async(&mut connection.clone())
                    .await;
                // A refund Redis cannot take leaves one hit too many in the window: the
                // request it belongs to has succeeded and must not fail for it.
                if let Err(error) = refunded {
                    tracing::warn!(%error, "could not take back a rate-limit hit in Redis");
                }
                Ok(())
            }
        }
    }

    fn refund_in_process(windows: &Mutex<HashMap<String, Window>>, key: &str) -> ApiResult<()> {
        let now = Instant::now();
        let mut windows = windows
            .lock()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("rate-limit table poisoned")))?;
        if let Some(window) = windows.get_mut(key)
            && now.duration_since(window.started) < window.length
        {
            window.hits = window.hits.saturating_sub(1);
        }
        Ok(())
    }

    fn redis_known_down(retry_redis_at: &Mutex<Option<Instant>>) -> bool {
        retry_redis_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|retry_at| Instant::now() < retry_at)
    }

    /// The count from Redis, or `None` when Redis failed (noted in `retry_redis_at`, and logged
    /// once per outage).
    async fn counted_in_redis(
        connection: ConnectionManager,
        key: &str,
        limit: Limit,
        retry_redis_at: &Mutex<Option<Instant>>,
    ) -> Option<(u32, u64)> {
        let counted = Self::hit_redis(connection, key, limit).await;
        let mut retry_at = retry_redis_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match counted {
            Ok(counted) => {
                if retry_at.take().is_some() {
                    tracing::info!("Redis answers again; rate limits are shared again");
                }
                Some(counted)
            }
            Err(error) => {
                if retry_at.replace(Instant::now() + REDIS_RETRY).is_none() {
                    tracing::warn!(%error, "Redis is unreachable: credential limits refuse, \
                        other limits count per instance until it is back");
                }
                None
            }
        }
    }

    fn hit_in_process(
        windows: &Mutex<HashMap<String, Window>>,
        key: &str,
        limit: Limit,
    ) -> ApiResult<(u32, u64)> {
        let now = Instant::now();
        let mut windows = windows
            .lock()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("rate-limit table poisoned")))?;
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, window| now.duration_since(window.started) < window.length);
        }
        let window = windows.entry(key.to_string()).or_insert(Window {
            started: now,
            hits: 0,
            length: limit.window,
        });
        if now.duration_since(window.started) >= window.length {
            *window = Window {
                started: now,
                hits: 0,
                length: limit.window,
            };
        }
        window.hits = window.hits.saturating_add(1);
        let remaining = window
            .length
            .saturating_sub(now.duration_since(window.started));
        Ok((window.hits, remaining.as_secs_f64().ceil() as u64))
    }

    async fn hit_redis(
        mut connection: ConnectionManager,
        key: &str,
        limit: Limit,
    ) -> redis::RedisResult<(u32, u64)> {
        let window_secs = limit.window.as_secs().max(1);
        // One round trip, atomically: open the window if absent, count, read its remaining time.
        let (_, hits, ttl): (Option<String>, u32, i64) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(0)
            .arg("EX")
            .arg(window_secs)
            .arg("NX")
            .cmd("INCR")
            .arg(key)
            .cmd("TTL")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        Ok((hits, u64::try_from(ttl).unwrap_or(window_secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(limiter: &RateLimiter, key: &str) {
        let limit = Limit::per(3, Duration::from_secs(60));
        for _ in 0..3 {
            limiter.hit(key, limit).await.expect("within the limit");
        }
        match limiter.hit(key, limit).await {
            Err(ApiError::RateLimited { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
        limiter
            .hit(&format!("{key}-other"), limit)
            .await
            .expect("another key has its own window");
        let refunded = format!("{key}-refunded");
        for _ in 0..10 {
            limiter
                .hit(&refunded, limit)
                .await
                .expect("refunded hits do not add up");
            limiter.refund(&refunded).await.expect("refunds");
        }
        limiter
            .refund(&format!("{key}-never-hit"))
            .await
            .expect("refunding nothing is fine");
        for _ in 0..3 {
            limiter
                .hit(&format!("{key}-never-hit"), limit)
                .await
                .expect("no credit was made");
        }
        assert!(
            limiter
                .hit(&format!("{key}-never-hit"), limit)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn in_process_limits_per_key() {
        exercise(&RateLimiter::in_process(), "login:a@b.c").await;
    }

    #[tokio::test]
    async fn a_window_reopens_after_it_ends() {
        let limiter = RateLimiter::in_process();
        let limit = Limit::per(1, Duration::from_millis(50));
        limiter.hit("k", limit).await.expect("first");
        assert!(limiter.hit("k", limit).await.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        limiter.hit("k", limit).await.expect("new window");
    }

    #[tokio::test]
    #[ignore = "needs TEST_REDIS_URL"]
    async fn redis_limits_per_key_when_configured() {
        let url = std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .expect("this test needs TEST_REDIS_URL");
        let client = redis::Client::open(url).expect("valid TEST_REDIS_URL");
        let connection = ConnectionManager::new(client)
            .await
            .expect("TEST_REDIS_URL is set but Redis is unreachable");
        let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        exercise(&RateLimiter::redis(connection, &namespace), "login:a@b.c").await;
    }
}
