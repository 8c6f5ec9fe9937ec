//! Status workflows as data: the `Definition` of states and transitions a company
//! keeps per entity type (ORDER now, APPOINTMENT later), the rules a definition
//! must satisfy before it is stored, and the ORDER templates each business type
//! starts with. Pure: no I/O.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::domain::TextRule;

/// Longest allowed state key (the key pattern is `^[A-Z][A-Z0-9_]{0,39}$`).
const MAX_KEY_LEN: usize = 40;
/// What a label may hold: one line of at most 60 characters.
const LABEL: TextRule = TextRule::single_line(60);

/// One status an entity can be in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Stable identifier, e.g. `PENDING`; matches `^[A-Z][A-Z0-9_]{0,39}$`.
    pub key: String,
    /// Human-readable name shown in the UI.
    pub label: String,
    /// Whether new entities start here; exactly one state is initial.
    #[serde(default)]
    pub initial: bool,
    /// Whether the entity's life ends here; no transition leaves a terminal state.
    #[serde(default)]
    pub terminal: bool,
    /// Whether entering this state gives reserved stock back.
    #[serde(default)]
    pub releases_stock: bool,
    /// Display color, `#RRGGBB`.
    #[serde(default)]
    pub color: Option<String>,
}

/// An allowed move from one state to another, and who may make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Key of the state the move leaves.
    pub from: String,
    /// Key of the state the move enters.
    pub to: String,
    /// Action name shown in the UI (e.g. "Confirm"); defaults to the target's label.
    #[serde(default)]
    pub label: Option<String>,
    /// Role names allowed to make the move; at least one.
    pub roles: Vec<String>,
    /// Whether the entity must be paid before the move is allowed.
    #[serde(default)]
    pub requires_payment: bool,
}

/// A whole workflow: its states and the transitions between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The states, in display order.
    pub states: Vec<State>,
    /// The transitions, in display order.
    pub transitions: Vec<Transition>,
}

/// Why a definition was refused: `field` is a path into the GraphQL input (e.g.
/// "input.states.2.key", "input.transitions.0.to", "input.states"), `message`
/// says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Path of the offending input field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= MAX_KEY_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn valid_color(color: &str) -> bool {
    color
        .strip_prefix('#')
        .is_some_and(|hex| hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_label(field: String, label: &str) -> Result<(), Invalid> {
    if label.trim().is_empty() {
        return Err(Invalid::new(field, "label must not be empty"));
    }
    LABEL
        .check(label)
        .map(drop)
        .map_err(|reason| Invalid::new(field, format!("label: {reason}")))
}

impl Definition {
    /// Checks the rules below; `known_roles` are the company's role names.
    /// Returns the FIRST problem found, in a deterministic order:
    ///
    /// 1. there is at least one state;
    /// 2. each state, in order: key non-empty, matching `^[A-Z][A-Z0-9_]{0,39}$`
    ///    and unique; label non-empty and at most 60 characters; color, when
    ///    given, `#RRGGBB`;
    /// 3. exactly one state is initial, and it is not terminal;
    /// 4. each transition, in order: `from` and `to` name existing states; it is
    ///    not a self-transition; it does not leave a terminal state; its
    ///    (from, to) pair is not a duplicate; its label, when given, is non-empty
    ///    and at most 60 characters; it has at least one role and every role is
    ///    known;
    /// 5. every state is reachable from the initial state (first unreachable
    ///    state in definition order is reported);
    /// 6. every non-terminal state has at least one outgoing transition;
    /// 7. only terminal states release stock.
    pub fn validate(&self, known_roles: &[&str]) -> Result<(), Invalid> {
        if self.states.is_empty() {
            return Err(Invalid::new(
                "input.states",
                "a workflow needs at least one state",
            ));
        }

        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for (i, state) in self.states.iter().enumerate() {
            let field = |name: &str| format!("input.states.{i}.{name}");
            if state.key.is_empty() {
                return Err(Invalid::new(field("key"), "key must not be empty"));
            }
            if !valid_key(&state.key) {
                return Err(Invalid::new(
                    field("key"),
                    format!(
                        "key `{}` has an invalid format: use 1 to {MAX_KEY_LEN} characters A-Z, 0-9 and _, starting with a letter (e.g. IN_PROGRESS)",
                        state.key
                    ),
                ));
            }
            if let Some(first) = index_of.insert(&state.key, i) {
                return Err(Invalid::new(
                    field("key"),
                    format!(
                        "duplicate state key `{}` (already used by state {first})",
                        state.key
                    ),
                ));
            }
            check_label(field("label"), &state.label)?;
            if let Some(color) = &state.color
                && !valid_color(color)
            {
                return Err(Invalid::new(
                    field("color"),
                    format!("color `{color}` must be a hex color like #RRGGBB"),
                ));
            }
        }

        let mut initial: Option<usize> = None;
        for (i, state) in self.states.iter().enumerate() {
            if !state.initial {
                continue;
            }
            if let Some(first) = initial {
                return Err(Invalid::new(
                    format!("input.states.{i}.initial"),
                    format!(
                        "only one state can be initial, but `{}` is initial as well as `{}`",
                        state.key, self.states[first].key
                    ),
                ));
            }
            initial = Some(i);
        }
        let Some(initial) = initial else {
            return Err(Invalid::new(
                "input.states",
                "exactly one state must be initial, but none is",
            ));
        };
        // Stock comes back once, when an order ends; a state the order could leave again would
        // give it back twice.
        if let Some((i, state)) = self
            .states
            .iter()
            .enumerate()
            .find(|(_, state)| state.releases_stock && !state.terminal)
        {
            return Err(Invalid::new(
                format!("input.states.{i}.releasesStock"),
                format!(
                    "state `{}` releases stock, so it must be terminal",
                    state.key
                ),
            ));
        }
        if self.states[initial].terminal {
            return Err(Invalid::new(
                format!("input.states.{initial}.terminal"),
                format!(
                    "the initial state `{}` cannot be terminal",
                    self.states[initial].key
                ),
            ));
        }

        let mut pairs: HashSet<(&str, &str)> = HashSet::new();
        for (i, transition) in self.transitions.iter().enumerate() {
            let field = |name: &str| format!("input.transitions.{i}.{name}");
            let Some(&from) = index_of.get(transition.from.as_str()) else {
                return Err(Invalid::new(
                    field("from"),
                    format!("unknown state `{}`", transition.from),
                ));
            };
            if !index_of.contains_key(transition.to.as_str()) {
                return Err(Invalid::new(
                    field("to"),
                    format!("unknown state `{}`", transition.to),
                ));
            }
            if transition.from == transition.to {
                return Err(Invalid::new(
                    field("to"),
                    format!(
                        "a transition cannot go from `{}` to itself",
                        transition.from
                    ),
                ));
            }
            if self.states[from].terminal {
                return Err(Invalid::new(
                    field("from"),
                    format!(
                        "no transition may leave the terminal state `{}`",
                        transition.from
                    ),
                ));
            }
            if !pairs.insert((&transition.from, &transition.to)) {
                return Err(Invalid::new(
                    field("to"),
                    format!(
                        "duplicate transition from `{}` to `{}`",
                        transition.from, transition.to
                    ),
                ));
            }
            if let Some(label) = &transition.label {
                check_label(field("label"), label)?;
            }
            if transition.roles.is_empty() {
                return Err(Invalid::new(
                    field("roles"),
                    "a transition needs at least one role",
                ));
            }
            for (r, role) in transition.roles.iter().enumerate() {
                if !known_roles.contains(&role.as_str()) {
                    return Err(Invalid::new(
                        format!("input.transitions.{i}.roles.{r}"),
                        format!("unknown role `{role}`"),
                    ));
                }
            }
        }

        let mut reached = vec![false; self.states.len()];
        reached[initial] = true;
        let mut queue = VecDeque::from([initial]);
        while let Some(current) = queue.pop_front() {
            for transition in self.transitions_from(&self.states[current].key) {
                if let Some(&next) = index_of.get(transition.to.as_str())
                    && !reached[next]
                {
                    reached[next] = true;
                    queue.push_back(next);
                }
            }
        }
        if let Some(i) = reached.iter().position(|reached| !reached) {
            return Err(Invalid::new(
                format!("input.states.{i}"),
                format!(
                    "state `{}` is not reachable from the initial state `{}`",
                    self.states[i].key, self.states[initial].key
                ),
            ));
        }

        for (i, state) in self.states.iter().enumerate() {
            if !state.terminal && self.transitions_from(&state.key).next().is_none() {
                return Err(Invalid::new(
                    format!("input.states.{i}"),
                    format!(
                        "state `{}` is not terminal but has no outgoing transition, so entities would get stuck there",
                        state.key
                    ),
                ));
            }
        }

        Ok(())
    }

    /// The first state marked initial (the only one, once validated).
    pub fn initial(&self) -> Option<&State> {
        self.states.iter().find(|state| state.initial)
    }

    /// The state with this key, if any.
    pub fn state(&self, key: &str) -> Option<&State> {
        self.states.iter().find(|state| state.key == key)
    }

    /// The transition from `from` to `to`, if the definition has one.
    pub fn transition(&self, from: &str, to: &str) -> Option<&Transition> {
        self.transitions
            .iter()
            .find(|transition| transition.from == from && transition.to == to)
    }

    /// Transitions leaving `from`, in definition order.
    pub fn transitions_from<'a>(
        &'a self,
        from: &'a str,
    ) -> impl Iterator<Item = &'a Transition> + 'a {
        self.transitions
            .iter()
            .filter(move |transition| transition.from == from)
    }
}

// Template palette.
const AMBER: &str = "#F59E0B";
const BLUE: &str = "#3B82F6";
const INDIGO: &str = "#6366F1";
const VIOLET: &str = "#8B5CF6";
const CYAN: &str = "#06B6D4";
const GREEN: &str = "#22C55E";
const RED: &str = "#EF4444";
const GRAY: &str = "#6B7280";

const STAFF: &[&str] = &["STAFF", "ADMIN"];
const KITCHEN: &[&str] = &["KITCHEN", "STAFF", "ADMIN"];
const MECHANIC: &[&str] = &["MECHANIC", "STAFF", "ADMIN"];
const RECEPTION: &[&str] = &["RECEPTION", "STAFF", "ADMIN"];
const PRACTITIONER: &[&str] = &["PRACTITIONER", "ADMIN"];

#[derive(Clone, Copy)]
enum Kind {
    Initial,
    Step,
    Done,
    Cancelled,
}

fn state(key: &str, label: &str, kind: Kind, color: &str) -> State {
    State {
        key: key.to_owned(),
        label: label.to_owned(),
        initial: matches!(kind, Kind::Initial),
        terminal: matches!(kind, Kind::Done | Kind::Cancelled),
        releases_stock: matches!(kind, Kind::Cancelled),
        color: Some(color.to_owned()),
    }
}

fn transition(from: &str, to: &str, label: &str, roles: &[&str]) -> Transition {
    Transition {
        from: from.to_owned(),
        to: to.to_owned(),
        label: Some(label.to_owned()),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        requires_payment: false,
    }
}

fn cancellations(from: &[&str], roles: &[&str]) -> impl Iterator<Item = Transition> {
    from.iter()
        .map(move |from| transition(from, "CANCELLED", "Cancel", roles))
}

fn restaurant() -> Definition {
    Definition {
        states: vec![
            state("PENDING", "Pending", Kind::Initial, AMBER),
            state("CONFIRMED", "Confirmed", Kind::Step, BLUE),
            state("PREPARING", "Preparing", Kind::Step, VIOLET),
            state("READY", "Ready", Kind::Step, CYAN),
            state("DELIVERED", "Delivered", Kind::Done, GREEN),
            state("CANCELLED", "Cancelled", Kind::Cancelled, RED),
        ],
        transitions: [
            transition("PENDING", "CONFIRMED", "Confirm", STAFF),
            transition("CONFIRMED", "PREPARING", "Start preparing", KITCHEN),
            transition("PREPARING", "READY", "Mark ready", KITCHEN),
            transition("READY", "DELIVERED", "Deliver", STAFF),
        ]
        .into_iter()
        .chain(cancellations(
            &["PENDING", "CONFIRMED", "PREPARING", "READY"],
            STAFF,
        ))
        .collect(),
    }
}

fn bike_shop() -> Definition {
    Definition {
        states: vec![
            state("QUOTE_REQUESTED", "Quote requested", Kind::Initial, AMBER),
            state("QUOTE_SENT", "Quote sent", Kind::Step, BLUE),
            state("QUOTE_APPROVED", "Quote approved", Kind::Step, INDIGO),
            state("IN_PROGRESS", "In progress", Kind::Step, VIOLET),
            state("READY_FOR_PICKUP", "Ready for pickup", Kind::Step, CYAN),
            state("COMPLETED", "Completed", Kind::Done, GREEN),
            state("CANCELLED", "Cancelled", Kind::Cancelled, RED),
        ],
        transitions: [
            transition("QUOTE_REQUESTED", "QUOTE_SENT", "Send quote", STAFF),
            transition("QUOTE_SENT", "QUOTE_APPROVED", "Approve quote", STAFF),
            transition("QUOTE_APPROVED", "IN_PROGRESS", "Start work", MECHANIC),
            transition(
                "IN_PROGRESS",
                "READY_FOR_PICKUP",
                "Mark ready for pickup",
                MECHANIC,
            ),
            // The bike leaves the shop only once the repair is paid.
            Transition {
                requires_payment: true,
                ..transition("READY_FOR_PICKUP", "COMPLETED", "Complete", STAFF)
            },
        ]
        .into_iter()
        .chain(cancellations(
            &["QUOTE_REQUESTED", "QUOTE_SENT", "QUOTE_APPROVED"],
            STAFF,
        ))
        .collect(),
    }
}

fn clinic() -> Definition {
    Definition {
        states: vec![
            state("SCHEDULED", "Scheduled", Kind::Initial, AMBER),
            state("CONFIRMED", "Confirmed", Kind::Step, BLUE),
            state("CHECKED_IN", "Checked in", Kind::Step, CYAN),
            state("IN_CONSULTATION", "In consultation", Kind::Step, VIOLET),
            state("COMPLETED", "Completed", Kind::Done, GREEN),
            state("NO_SHOW", "No-show", Kind::Done, GRAY),
            state("CANCELLED", "Cancelled", Kind::Cancelled, RED),
        ],
        transitions: [
            transition("SCHEDULED", "CONFIRMED", "Confirm", RECEPTION),
            transition("CONFIRMED", "CHECKED_IN", "Check in", RECEPTION),
            transition(
                "CHECKED_IN",
                "IN_CONSULTATION",
                "Start consultation",
                PRACTITIONER,
            ),
            transition("IN_CONSULTATION", "COMPLETED", "Complete", PRACTITIONER),
            transition("SCHEDULED", "NO_SHOW", "Mark no-show", RECEPTION),
            transition("CONFIRMED", "NO_SHOW", "Mark no-show", RECEPTION),
        ]
        .into_iter()
        .chain(cancellations(&["SCHEDULED", "CONFIRMED"], RECEPTION))
        .collect(),
    }
}

fn pet_store() -> Definition {
    Definition {
        states: vec![
            state("PENDING", "Pending", Kind::Initial, AMBER),
            state("CONFIRMED", "Confirmed", Kind::Step, BLUE),
            state("READY", "Ready", Kind::Step, CYAN),
            state("DELIVERED", "Delivered", Kind::Done, GREEN),
            state("CANCELLED", "Cancelled", Kind::Cancelled, RED),
        ],
        transitions: [
            transition("PENDING", "CONFIRMED", "Confirm", STAFF),
            transition("CONFIRMED", "READY", "Mark ready", STAFF),
            transition("READY", "DELIVERED", "Deliver", STAFF),
        ]
        .into_iter()
        .chain(cancellations(&["PENDING", "CONFIRMED", "READY"], STAFF))
        .collect(),
    }
}

fn generic() -> Definition {
    Definition {
        states: vec![
            state("OPEN", "Open", Kind::Initial, AMBER),
            state("IN_PROGRESS", "In progress", Kind::Step, VIOLET),
            state("DONE", "Done", Kind::Done, GREEN),
            state("CANCELLED", "Cancelled", Kind::Cancelled, RED),
        ],
        transitions: [
            transition("OPEN", "IN_PROGRESS", "Start", STAFF),
            transition("IN_PROGRESS", "DONE", "Finish", STAFF),
        ]
        .into_iter()
        .chain(cancellations(&["OPEN", "IN_PROGRESS"], STAFF))
        .collect(),
    }
}

/// The ORDER workflow template a new company of `business_type` ("RESTAURANT",
/// "BIKE_SHOP", "CLINIC", "PET_STORE", "GENERIC"; unknown → generic) starts
/// with, with its name.
pub fn order_template(business_type: &str) -> (&'static str, Definition) {
    match business_type {
        "RESTAURANT" => ("Restaurant order", restaurant()),
        "BIKE_SHOP" => ("Workshop order", bike_shop()),
        "CLINIC" => ("Appointment", clinic()),
        "PET_STORE" => ("Pet store order", pet_store()),
        _ => ("Order", generic()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Definition, Invalid, State, Transition, order_template};

    const BUSINESS_TYPES: [&str; 5] = ["RESTAURANT", "BIKE_SHOP", "CLINIC", "PET_STORE", "GENERIC"];

    fn roles_of(business_type: &str) -> Vec<&'static str> {
        let mut roles = vec!["ADMIN", "STAFF", "KITCHEN"];
        match business_type {
            "BIKE_SHOP" => roles.push("MECHANIC"),
            "CLINIC" => roles.extend(["RECEPTION", "PRACTITIONER"]),
            _ => {}
        }
        roles
    }

    fn state(key: &str, initial: bool, terminal: bool) -> State {
        State {
            key: key.to_owned(),
            label: key.to_lowercase(),
            initial,
            terminal,
            releases_stock: false,
            color: None,
        }
    }

    fn transition(from: &str, to: &str) -> Transition {
        Transition {
            from: from.to_owned(),
            to: to.to_owned(),
            label: None,
            roles: vec!["STAFF".to_owned()],
            requires_payment: false,
        }
    }

    /// OPEN (initial) → DOING → DONE (terminal); CANCELLED (terminal) from OPEN.
    fn base() -> Definition {
        Definition {
            states: vec![
                state("OPEN", true, false),
                state("DOING", false, false),
                state("DONE", false, true),
                state("CANCELLED", false, true),
            ],
            transitions: vec![
                transition("OPEN", "DOING"),
                transition("DOING", "DONE"),
                transition("OPEN", "CANCELLED"),
            ],
        }
    }

    const ROLES: &[&str] = &["ADMIN", "STAFF"];

    #[test]
    fn the_base_fixture_is_valid() {
        assert_eq!(base().validate(ROLES), Ok(()));
    }

    #[test]
    fn every_template_validates_against_the_roles_of_its_business_type() {
        for business_type in BUSINESS_TYPES {
            let (_, definition) = order_template(business_type);
            assert_eq!(
                definition.validate(&roles_of(business_type)),
                Ok(()),
                "{business_type}"
            );
        }
    }

    #[test]
    fn every_template_transition_is_allowed_to_admin() {
        for business_type in BUSINESS_TYPES {
            let (_, definition) = order_template(business_type);
            for transition in &definition.transitions {
                assert!(
                    transition.roles.iter().any(|role| role == "ADMIN"),
                    "{business_type}: {} -> {}",
                    transition.from,
                    transition.to
                );
            }
        }
    }

    #[test]
    fn every_template_cancellation_releases_stock_and_is_terminal() {
        for business_type in BUSINESS_TYPES {
            let (_, definition) = order_template(business_type);
            let cancelled = definition.state("CANCELLED");
            assert!(
                cancelled.is_some_and(|state| state.terminal && state.releases_stock),
                "{business_type}"
            );
            let releasing: Vec<_> = definition
                .states
                .iter()
                .filter(|state| state.releases_stock)
                .map(|state| state.key.as_str())
                .collect();
            assert_eq!(releasing, ["CANCELLED"], "{business_type}");
        }
    }

    #[test]
    fn templates_have_their_names_and_initial_states() {
        let expected = [
            ("RESTAURANT", "Restaurant order", "PENDING"),
            ("BIKE_SHOP", "Workshop order", "QUOTE_REQUESTED"),
            ("CLINIC", "Appointment", "SCHEDULED"),
            ("PET_STORE", "Pet store order", "PENDING"),
            ("GENERIC", "Order", "OPEN"),
        ];
        for (business_type, name, initial) in expected {
            let (actual_name, definition) = order_template(business_type);
            assert_eq!(actual_name, name);
            assert_eq!(
                definition.initial().map(|state| state.key.as_str()),
                Some(initial)
            );
        }
    }

    #[test]
    fn an_unknown_business_type_gets_the_generic_template() {
        assert_eq!(order_template("SPACESHIP"), order_template("GENERIC"));
    }

    #[test]
    fn only_the_bike_shop_pickup_requires_payment() {
        for business_type in BUSINESS_TYPES {
            let (_, definition) = order_template(business_type);
            let paid_steps: Vec<(&str, &str)> = definition
                .transitions
                .iter()
                .filter(|t| t.requires_payment)
                .map(|t| (t.from.as_str(), t.to.as_str()))
                .collect();
            let expected: &[(&str, &str)] = if business_type == "BIKE_SHOP" {
                &[("READY_FOR_PICKUP", "COMPLETED")]
            } else {
                &[]
            };
            assert_eq!(paid_steps, expected, "{business_type}");
        }
    }

    #[test]
    fn specialised_roles_get_exactly_their_template_transitions() {
        let roles_of_transitions = |business_type: &str, role: &str| -> Vec<(String, String)> {
            order_template(business_type)
                .1
                .transitions
                .into_iter()
                .filter(|transition| transition.roles.iter().any(|r| r == role))
                .map(|transition| (transition.from, transition.to))
                .collect()
        };
        let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
                .collect()
        };
        assert_eq!(
            roles_of_transitions("RESTAURANT", "KITCHEN"),
            pairs(&[("CONFIRMED", "PREPARING"), ("PREPARING", "READY")])
        );
        assert_eq!(
            roles_of_transitions("BIKE_SHOP", "MECHANIC"),
            pairs(&[
                ("QUOTE_APPROVED", "IN_PROGRESS"),
                ("IN_PROGRESS", "READY_FOR_PICKUP")
            ])
        );
        assert_eq!(
            roles_of_transitions("CLINIC", "PRACTITIONER"),
            pairs(&[
                ("CHECKED_IN", "IN_CONSULTATION"),
                ("IN_CONSULTATION", "COMPLETED")
            ])
        );
        let clinic = order_template("CLINIC").1;
        for transition in &clinic.transitions {
            let practitioner = transition.roles.iter().any(|r| r == "PRACTITIONER");
            let reception = transition.roles.iter().any(|r| r == "RECEPTION");
            assert!(practitioner != reception, "{transition:?}");
        }
    }

    #[test]
    fn invalid_definitions_are_refused_with_the_field_and_the_problem() {
        type Edit = fn(&mut Definition);
        let cases: &[(&str, Edit, &str, &str)] = &[
            (
                "no states",
                |d| d.states.clear(),
                "input.states",
                "at least one state",
            ),
            (
                "duplicate key",
                |d| d.states[1].key = "OPEN".into(),
                "input.states.1.key",
                "duplicate",
            ),
            (
                "empty key",
                |d| d.states[0].key = String::new(),
                "input.states.0.key",
                "empty",
            ),
            (
                "lower-case key",
                |d| d.states[0].key = "open".into(),
                "input.states.0.key",
                "invalid format",
            ),
            (
                "key starting with a digit",
                |d| d.states[2].key = "1DONE".into(),
                "input.states.2.key",
                "invalid format",
            ),
            (
                "key too long",
                |d| d.states[0].key = "A".repeat(41),
                "input.states.0.key",
                "invalid format",
            ),
            (
                "empty label",
                |d| d.states[1].label = "  ".into(),
                "input.states.1.label",
                "empty",
            ),
            (
                "label too long",
                |d| d.states[1].label = "é".repeat(61),
                "input.states.1.label",
                "at most 60",
            ),
            (
                "bad color",
                |d| d.states[0].color = Some("red".into()),
                "input.states.0.color",
                "#RRGGBB",
            ),
            (
                "short color",
                |d| d.states[0].color = Some("#FFF".into()),
                "input.states.0.color",
                "#RRGGBB",
            ),
            (
                "two initial states",
                |d| d.states[1].initial = true,
                "input.states.1.initial",
                "only one state can be initial",
            ),
            (
                "no initial state",
                |d| d.states[0].initial = false,
                "input.states",
                "initial",
            ),
            (
                "terminal initial state",
                |d| d.states[0].terminal = true,
                "input.states.0.terminal",
                "cannot be terminal",
            ),
            (
                "unknown from state",
                |d| d.transitions[1].from = "NOPE".into(),
                "input.transitions.1.from",
                "unknown state `NOPE`",
            ),
            (
                "unknown to state",
                |d| d.transitions[0].to = "NOPE".into(),
                "input.transitions.0.to",
                "unknown state `NOPE`",
            ),
            (
                "self transition",
                |d| d.transitions.push(transition("DOING", "DOING")),
                "input.transitions.3.to",
                "itself",
            ),
            (
                "transition out of a terminal state",
                |d| d.transitions.push(transition("DONE", "OPEN")),
                "input.transitions.3.from",
                "terminal state `DONE`",
            ),
            (
                "duplicate pair",
                |d| d.transitions.push(transition("OPEN", "DOING")),
                "input.transitions.3.to",
                "duplicate transition",
            ),
            (
                "empty transition label",
                |d| d.transitions[0].label = Some(String::new()),
                "input.transitions.0.label",
                "empty",
            ),
            (
                "empty roles",
                |d| d.transitions[0].roles.clear(),
                "input.transitions.0.roles",
                "at least one role",
            ),
            (
                "unknown role",
                |d| d.transitions[2].roles.push("CHEF".into()),
                "input.transitions.2.roles.1",
                "unknown role `CHEF`",
            ),
            (
                "unreachable state",
                |d| {
                    d.states.push(state("ORPHAN", false, false));
                    d.transitions.push(transition("ORPHAN", "DONE"));
                },
                "input.states.4",
                "`ORPHAN` is not reachable",
            ),
            (
                "unreachable terminal state",
                |d| d.transitions.retain(|t| t.to != "CANCELLED"),
                "input.states.3",
                "`CANCELLED` is not reachable",
            ),
            (
                "stuck non-terminal state",
                |d| {
                    d.states.push(state("WAITING", false, false));
                    d.transitions.push(transition("DOING", "WAITING"));
                },
                "input.states.4",
                "no outgoing transition",
            ),
        ];
        for (name, edit, field, problem) in cases {
            let mut definition = base();
            edit(&mut definition);
            let Err(Invalid {
                field: actual_field,
                message,
            }) = definition.validate(ROLES)
            else {
                panic!("{name}: expected an error");
            };
            assert_eq!(actual_field, *field, "{name}: {message}");
            assert!(
                message.contains(problem),
                "{name}: `{message}` should mention `{problem}`"
            );
        }
    }

    #[test]
    fn validation_reports_the_first_problem_in_definition_order() {
        let mut definition = base();
        definition.states[3].key = "bad".into();
        definition.states[1].color = Some("nope".into());
        definition.transitions[0].roles.clear();
        let error = definition.validate(ROLES).err();
        assert_eq!(
            error.map(|error| error.field),
            Some("input.states.1.color".to_owned())
        );
    }

    #[test]
    fn lower_case_hex_colors_are_accepted() {
        let mut definition = base();
        definition.states[0].color = Some("#a1b2c3".into());
        assert_eq!(definition.validate(ROLES), Ok(()));
    }

    #[test]
    fn transition_finds_a_pair_only_in_its_direction() {
        let (_, definition) = order_template("BIKE_SHOP");
        let found = definition.transition("READY_FOR_PICKUP", "COMPLETED");
        assert!(found.is_some_and(|transition| transition.to == "COMPLETED"));
        assert!(
            definition
                .transition("COMPLETED", "READY_FOR_PICKUP")
                .is_none()
        );
        assert!(
            definition
                .transition("QUOTE_REQUESTED", "COMPLETED")
                .is_none()
        );
        assert!(definition.transition("NOPE", "COMPLETED").is_none());
    }

    #[test]
    fn transitions_from_lists_outgoing_transitions_in_definition_order() {
        let (_, definition) = order_template("RESTAURANT");
        let targets: Vec<_> = definition
            .transitions_from("PENDING")
            .map(|transition| transition.to.as_str())
            .collect();
        assert_eq!(targets, ["CONFIRMED", "CANCELLED"]);
        assert_eq!(definition.transitions_from("DELIVERED").count(), 0);
        assert_eq!(definition.transitions_from("NOPE").count(), 0);
    }

    #[test]
    fn state_and_initial_look_states_up_by_key() {
        let definition = base();
        assert_eq!(
            definition.state("DONE").map(|state| state.terminal),
            Some(true)
        );
        assert!(definition.state("done").is_none());
        assert_eq!(
            definition.initial().map(|state| state.key.as_str()),
            Some("OPEN")
        );
        assert!(
            Definition {
                states: vec![],
                transitions: vec![]
            }
            .initial()
            .is_none()
        );
    }

    #[test]
    fn json_uses_camel_case_and_round_trips() -> Result<(), serde_json::Error> {
        let (_, mut definition) = order_template("BIKE_SHOP");
        definition.transitions[4].requires_payment = true;
        let json = serde_json::to_value(&definition)?;
        assert_eq!(json["states"][6]["releasesStock"], true);
        assert_eq!(json["states"][0]["color"], "#F59E0B");
        assert_eq!(json["transitions"][4]["requiresPayment"], true);
        assert!(json["states"][0].get("releases_stock").is_none());
        assert!(json["transitions"][0].get("requires_payment").is_none());
        let back: Definition = serde_json::from_value(json)?;
        assert_eq!(back, definition);
        Ok(())
    }

    #[test]
    fn json_defaults_omitted_optional_fields() -> Result<(), serde_json::Error> {
        let json = r#"{
            "states": [
                {"key": "OPEN", "label": "Open", "initial": true},
                {"key": "DONE", "label": "Done", "terminal": true, "releasesStock": true}
            ],
            "transitions": [{"from": "OPEN", "to": "DONE", "roles": ["STAFF"]}]
        }"#;
        let definition: Definition = serde_json::from_str(json)?;
        assert_eq!(
            definition,
            Definition {
                states: vec![
                    State {
                        key: "OPEN".into(),
                        label: "Open".into(),
                        initial: true,
                        terminal: false,
                        releases_stock: false,
                        color: None,
                    },
                    State {
                        key: "DONE".into(),
                        label: "Done".into(),
                        initial: false,
                        terminal: true,
                        releases_stock: true,
                        color: None,
                    },
                ],
                transitions: vec![transition("OPEN", "DONE")],
            }
        );
        assert_eq!(definition.validate(ROLES), Ok(()));
        Ok(())
    }

    #[test]
    fn json_without_roles_is_rejected() {
        let json = r#"{"states": [], "transitions": [{"from": "A", "to": "B"}]}"#;
        assert!(serde_json::from_str::<Definition>(json).is_err());
    }
}
