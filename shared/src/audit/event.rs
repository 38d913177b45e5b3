//! What the trail records: one [`Event`] per change or refusal, by an
//! [`Actor`], with an [`Outcome`].

use serde_json::Value;
use uuid::Uuid;

use super::Action;
use crate::{identity::Identity, proto::audit::v1::AuditOutcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    pub(super) fn to_proto(s: &str) -> AuditOutcome {
        match s {
            "success" => AuditOutcome::Success,
            "denied" => AuditOutcome::Denied,
            "failed" => AuditOutcome::Failed,
            _ => AuditOutcome::Unspecified,
        }
    }
}

/// Who did it: a user, or an anonymous caller named by what they claimed.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub email: String,
}

impl From<&Identity> for Actor {
    fn from(identity: &Identity) -> Self {
        Self {
            id: Some(identity.user_id),
            email: identity.email.clone(),
        }
    }
}

/// One event to append. `details` must hold no secret.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub actor: Actor,
    pub target_type: &'static str,
    pub target_id: String,
    pub outcome: Outcome,
    pub details: Value,
}

impl Event {
    pub fn new(
        action: Action,
        actor: Actor,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        Self {
            action,
            actor,
            target_type,
            target_id: target_id.to_string(),
            outcome: Outcome::Success,
            details: Value::Object(Default::default()),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}
