//! The Actor: who a request runs as, built once from its credentials.

use uuid::Uuid;

use crate::db::tenant::CompanyId;

/// A member of a company acting through a user token or an API key. Every tenant-owned read
/// and write is scoped to `company_id`, which comes from here and never from input.
#[derive(Clone, Debug)]
pub struct Actor {
    company_id: Uuid,
    principal: Principal,
    roles: Vec<String>,
    api_call_limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User(Uuid),
    /// An integrator's key; it holds one role and never more than `created_by` holds.
    ApiKey {
        id: Uuid,
        created_by: Uuid,
    },
}

/// What the HTTP layer found in the request's credentials.
#[derive(Clone, Debug)]
pub enum Viewer {
    Anonymous,
    /// A platform operator, outside every company.
    Operator {
        user_id: Uuid,
    },
    Member(Actor),
}

impl Actor {
    pub(crate) fn new(
        company_id: Uuid,
        principal: Principal,
        roles: Vec<String>,
        api_call_limit: Option<u32>,
    ) -> Self {
        Self {
            company_id,
            principal,
            roles,
            api_call_limit,
        }
    }

    /// The company's own limit on API calls per actor and window, if it set one.
    pub fn api_call_limit(&self) -> Option<u32> {
        self.api_call_limit
    }

    pub fn company_id(&self) -> Uuid {
        self.company_id
    }

    /// The company the actor acts for, to open its transactions with.
    pub fn company(&self) -> CompanyId {
        CompanyId::of_actor(self.company_id)
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The role names the actor holds in its company.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The user behind the request: the token's user, or the key's creator.
    pub fn user_id(&self) -> Option<Uuid> {
        match self.principal {
            Principal::User(id) => Some(id),
            Principal::ApiKey { .. } => None,
        }
    }

    /// The casbin subject of the actor.
    pub fn subject(&self) -> String {
        match self.principal {
            Principal::User(id) => user_subject(id),
            Principal::ApiKey { id, .. } => api_key_subject(id),
        }
    }
}

/// How a user's casbin subject begins.
pub const USER_SUBJECT_PREFIX: &str = "u:";

pub fn user_subject(id: Uuid) -> String {
    format!("{USER_SUBJECT_PREFIX}{id}")
}

/// The user a casbin subject (or an event's `actor`) names; `None` for an API key's.
pub fn user_of_subject(subject: &str) -> Option<Uuid> {
    subject
        .strip_prefix(USER_SUBJECT_PREFIX)
        .and_then(|id| Uuid::parse_str(id).ok())
}

pub fn api_key_subject(id: Uuid) -> String {
    format!("k:{id}")
}
