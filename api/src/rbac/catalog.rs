//! The permission catalogue and the built-in roles every company starts with.

use std::fmt;

/// Everything a permission can be about.
pub const RESOURCES: [&str; 14] = [
    "orders",
    "customers",
    "catalog",
    "workflows",
    "payments",
    "webhooks",
    "members",
    "roles",
    "api_keys",
    "reports",
    "billing",
    "settings",
    "events",
    "notifications",
];

/// Everything a permission can allow.
pub const ACTIONS: [&str; 7] = [
    "read",
    "create",
    "update",
    "delete",
    "transition",
    "refund",
    "manage",
];

/// One (resource, action) pair; `*` in either stands for all (only ADMIN holds that).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub resource: String,
    pub action: String,
}

impl Permission {
    /// A permission from the catalogue; anything else is refused with the reason.
    pub fn parse(resource: &str, action: &str) -> Result<Self, String> {
        if !RESOURCES.contains(&resource) {
            return Err(format!(
                "unknown resource `{resource}`; one of: {}",
                RESOURCES.join(", ")
            ));
        }
        if !ACTIONS.contains(&action) {
            return Err(format!(
                "unknown action `{action}`; one of: {}",
                ACTIONS.join(", ")
            ));
        }
        Ok(Self::new(resource, action))
    }

    fn new(resource: &str, action: &str) -> Self {
        Self {
            resource: resource.into(),
            action: action.into(),
        }
    }

    /// From a casbin `p` rule `[role, domain, resource, action]`.
    pub fn from_rule(rule: &[String]) -> Option<Self> {
        match rule {
            [_, _, resource, action, ..] => Some(Self::new(resource, action)),
            _ => None,
        }
    }

    /// Every concrete permission this one stands for (`*` expanded over the catalogue).
    pub fn expand(&self) -> Vec<Permission> {
        let resources: Vec<&str> = if self.resource == "*" {
            RESOURCES.to_vec()
        } else {
            vec![self.resource.as_str()]
        };
        let actions: Vec<&str> = if self.action == "*" {
            ACTIONS.to_vec()
        } else {
            vec![self.action.as_str()]
        };
        resources
            .iter()
            .flat_map(|resource| {
                actions
                    .iter()
                    .map(move |action| Permission::new(resource, action))
            })
            .collect()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

/// A role every company of a business type gets, with fixed permissions.
pub struct BuiltInRole {
    pub name: &'static str,
    pub permissions: Vec<Permission>,
}

fn grants(pairs: &[(&str, &[&str])]) -> Vec<Permission> {
    pairs
        .iter()
        .flat_map(|(resource, actions)| {
            actions
                .iter()
                .map(move |action| Permission::new(resource, action))
        })
        .collect()
}

pub const ADMIN: &str = "ADMIN";

/// The built-in roles of a business type (`RESTAURANT`, `BIKE_SHOP`, `CLINIC`, …).
pub fn built_in_roles(business_type: &str) -> Vec<BuiltInRole> {
    let mut roles = vec![
        BuiltInRole {
            name: ADMIN,
            permissions: vec![Permission::new("*", "*")],
        },
        BuiltInRole {
            name: "STAFF",
            permissions: grants(&[
                ("orders", &["read", "create", "update", "transition"]),
                ("customers", &["read", "create", "update"]),
                ("catalog", &["read"]),
                ("workflows", &["read"]),
                ("payments", &["read", "create", "update"]),
                ("reports", &["read"]),
                ("members", &["read"]),
                ("events", &["read"]),
                ("notifications", &["read"]),
            ]),
        },
        BuiltInRole {
            name: "KITCHEN",
            permissions: grants(&[
                ("orders", &["read", "transition"]),
                ("catalog", &["read"]),
                ("workflows", &["read"]),
                ("events", &["read"]),
            ]),
        },
    ];
    match business_type {
        "BIKE_SHOP" => roles.push(BuiltInRole {
            name: "MECHANIC",
            permissions: grants(&[
                ("orders", &["read", "update", "transition"]),
                ("customers", &["read"]),
                ("catalog", &["read"]),
                ("workflows", &["read"]),
                ("events", &["read"]),
            ]),
        }),
        "CLINIC" => {
            roles.push(BuiltInRole {
                name: "RECEPTION",
                permissions: grants(&[
                    ("orders", &["read", "create", "update", "transition"]),
                    ("customers", &["read", "create", "update"]),
                    ("catalog", &["read"]),
                    ("workflows", &["read"]),
                    ("payments", &["read", "create", "update"]),
                    ("events", &["read"]),
                ]),
            });
            roles.push(BuiltInRole {
                name: "PRACTITIONER",
                permissions: grants(&[
                    ("orders", &["read", "update", "transition"]),
                    ("customers", &["read"]),
                    ("catalog", &["read"]),
                    ("workflows", &["read"]),
                    ("events", &["read"]),
                ]),
            });
        }
        _ => {}
    }
    roles
}

/// Role names are upper-case identifiers, so they never collide with user (`u:…`) or key
/// (`k:…`) subjects in casbin.
pub fn is_valid_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    (2..=32).contains(&name.len())
        && chars.next().is_some_and(|first| first.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_permission_is_in_the_catalogue() {
        for business_type in ["RESTAURANT", "BIKE_SHOP", "CLINIC", "PET_STORE", "GENERIC"] {
            for role in built_in_roles(business_type) {
                for permission in role.permissions.iter().flat_map(Permission::expand) {
                    Permission::parse(&permission.resource, &permission.action)
                        .unwrap_or_else(|error| panic!("{}: {error}", role.name));
                }
            }
        }
    }

    #[test]
    fn business_types_get_their_own_roles() {
        let names = |business_type| -> Vec<&str> {
            built_in_roles(business_type)
                .iter()
                .map(|role| role.name)
                .collect()
        };
        assert!(names("BIKE_SHOP").contains(&"MECHANIC"));
        assert!(names("CLINIC").contains(&"PRACTITIONER"));
        assert!(!names("RESTAURANT").contains(&"MECHANIC"));
    }

    #[test]
    fn role_names_are_upper_case_identifiers() {
        for valid in ["ADMIN", "SHIFT_LEAD", "COOK2"] {
            assert!(is_valid_role_name(valid), "{valid}");
        }
        for invalid in ["", "a", "admin", "u:123", "*", "2COOK", "SHIFT LEAD"] {
            assert!(!is_valid_role_name(invalid), "{invalid}");
        }
    }

    #[test]
    fn unknown_permissions_are_refused() {
        assert!(Permission::parse("orders", "read").is_ok());
        assert!(Permission::parse("*", "*").is_err());
        assert!(Permission::parse("orders", "fly").is_err());
    }
}
