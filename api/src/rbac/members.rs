//! What authentication checks of a member on every request — the company's status and API limit,
//! and when the password last changed — kept per instance, so that a request does not pay a
//! statement before its own work (on the order list it was one statement in six).
//!
//! The cache is emptied with the policies: at once on the instance that changes access, on
//! every other instance at the Redis notice, and at the periodic reload, so a missed notice
//! leaves an entry stale for at most that period. Only members found are kept; a miss always
//! asks the database.

use std::{
    collections::HashMap,
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Beyond this many members the cache starts over rather than grow without bound.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub company_status: String,
    pub api_rate_limit: Option<i32>,
    pub password_changed_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct MemberCache {
    /// Grows at every clear; a state read from the database before a clear is not stored
    /// after it.
    generation: AtomicU64,
    entries: RwLock<HashMap<(Uuid, Uuid), MemberState>>,
}

impl MemberCache {
    /// The state of `user` in `company`, when known.
    pub fn get(&self, user: Uuid, company: Uuid) -> Option<MemberState> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(user, company))
            .cloned()
    }

    /// Take before reading a state from the database, and hand to [`Self::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `state`, read at `generation`, unless access changed since.
    pub fn put(&self, user: Uuid, company: Uuid, state: MemberState, generation: u64) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert((user, company), state);
    }

    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str) -> MemberState {
        MemberState {
            company_status: status.into(),
            api_rate_limit: None,
            password_changed_at: Utc::now(),
        }
    }

    #[test]
    fn a_state_read_before_a_clear_is_not_kept_after_it() {
        let cache = MemberCache::default();
        let (user, company) = (Uuid::now_v7(), Uuid::now_v7());

        let status = |cache: &MemberCache| cache.get(user, company).map(|kept| kept.company_status);
        cache.put(user, company, state("ACTIVE"), cache.generation());
        assert_eq!(status(&cache), Some("ACTIVE".to_string()));

        let read_before_suspension = cache.generation();
        cache.clear();
        cache.put(user, company, state("ACTIVE"), read_before_suspension);
        assert_eq!(status(&cache), None);

        cache.put(user, company, state("SUSPENDED"), cache.generation());
        assert_eq!(status(&cache), Some("SUSPENDED".to_string()));
    }
}
