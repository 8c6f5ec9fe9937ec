//! Fixed-window rate limits, in Redis when configured (shared by every instance) or in process.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

use crate::error::{ApiError, ApiResult};

/// One limit: `max` hits per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn per(max: u32, window: Duration) -> Self {
        Self { max, window }
    }
}

pub enum RateLimiter {
    InProcess(Mutex<HashMap<String, Window>>),
    Redis {
        connection: ConnectionManager,
        namespace: String,
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
        }
    }

    /// Counts one hit on `key`; over the limit → `RATE_LIMITED` with the seconds to wait.
    pub async fn hit(&self, key: &str, limit: Limit) -> ApiResult<()> {
        let (hits, retry_after) = match self {
            Self::InProcess(windows) => Self::hit_in_process(windows, key, limit)?,
            Self::Redis {
                connection,
                namespace,
            } => {
                Self::hit_redis(connection.clone(), &format!("{namespace}:rl:{key}"), limit).await?
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
            Self::InProcess(windows) => {
                let now = Instant::now();
                let mut windows = windows.lock().map_err(|_| {
                    ApiError::internal(anyhow::anyhow!("rate-limit table poisoned"))
                })?;
                if let Some(window) = windows.get_mut(key)
                    && now.duration_since(window.started) < window.length
                {
                    window.hits = window.hits.saturating_sub(1);
                }
                Ok(())
            }
            Self::Redis {
                connection,
                namespace,
            } => {
                // Only an open window is decremented: DECR on an expired key would create one
                // with no expiry.
                let script = redis::Script::new(
                    "local hits = tonumber(redis.call('GET', KEYS[1])) \
                     if hits and hits > 0 then return redis.call('DECR', KEYS[1]) end return 0",
                );
                let _: i64 = script
                    .key(format!("{namespace}:rl:{key}"))
                    .invoke_async(&mut connection.clone())
                    .await
                    .map_err(ApiError::internal)?;
                Ok(())
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
    ) -> ApiResult<(u32, u64)> {
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
            .await
            .map_err(ApiError::internal)?;
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
    async fn redis_limits_per_key_when_configured() {
        let Some(url) = std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            return;
        };
        let client = redis::Client::open(url).expect("valid TEST_REDIS_URL");
        let connection = ConnectionManager::new(client)
            .await
            .expect("TEST_REDIS_URL is set but Redis is unreachable");
        let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        exercise(&RateLimiter::redis(connection, &namespace), "login:a@b.c").await;
    }
}
