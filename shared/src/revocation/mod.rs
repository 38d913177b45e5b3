//! Revocation in seconds, everywhere. A map:
//!
//! | concept | where |
//! |---|---|
//! | a fact (what a verifier needs to refuse a token locally) | [`Fact`], here |
//! | what a verifier knows of the facts, and its freshness | [`state`] |
//! | document-service's subscription to auth-service's feed | [`feed`] |
//! | the log: facts written with each change, polled, served, pruned | `auth-service/src/revocation/` |
//!
//! The model: a user's (or service account's) newest fact carries its token
//! generation and disabled flag; a token with an older `tgen`, or of a
//! disabled principal, is refused. A session fact refuses the tokens whose
//! `sid` is that session. A fact older than what the log keeps is moot: every
//! token issued before it has expired.

pub mod feed;
pub mod state;

use uuid::Uuid;

use crate::{db::Timestamp, proto::auth::v1 as pb};

pub use feed::{Credentials, Feed};
pub use state::Revocations;

crate::catalogue::catalogue! {
    /// What a fact says happened, as the `revocations` table spells it; on
    /// the wire it is the `RevocationKind` of the same name.
    pub enum Kind {
        UserDisabled => "user_disabled",
        UserEnabled => "user_enabled",
        PasswordChanged => "password_changed",
        RolesChanged => "roles_changed",
        /// One session: the fact carries its id.
        SessionRevoked => "session_revoked",
        AllSessionsRevoked => "all_sessions_revoked",
        ServiceAccountRevoked => "service_account_revoked",
    }
}

impl Kind {
    /// `REVOCATION_KIND_<SPELLING>`: the names are the mapping.
    fn to_proto(self) -> pb::RevocationKind {
        let name = format!("REVOCATION_KIND_{}", self.as_str().to_ascii_uppercase());
        pb::RevocationKind::from_str_name(&name).unwrap_or(pb::RevocationKind::Unspecified)
    }

    fn from_proto(kind: pb::RevocationKind) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.to_proto() == kind)
    }
}

impl TryFrom<String> for Kind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown revocation kind {s:?}"))
    }
}

/// One revocation fact, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Fact {
    pub seq: i64,
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    pub principal_id: Uuid,
    pub token_generation: i64,
    pub disabled: bool,
    /// Set for [`Kind::SessionRevoked`] only.
    pub session_id: Option<Uuid>,
    pub occurred_at: Timestamp,
}

impl Fact {
    pub fn to_proto(&self) -> pb::RevocationEvent {
        pb::RevocationEvent {
            cursor: self.seq as u64,
            kind: self.kind.to_proto() as i32,
            principal_id: self.principal_id.to_string(),
            token_generation: self.token_generation,
            disabled: self.disabled,
            session_id: self.session_id.map(|s| s.to_string()).unwrap_or_default(),
            occurred_at: Some(self.occurred_at.to_proto()),
        }
    }

    /// A fact from the wire; `None` when it is not one this build can apply
    /// (the subscriber then resyncs rather than skip it).
    pub fn from_proto(event: &pb::RevocationEvent) -> Option<Self> {
        let kind = Kind::from_proto(pb::RevocationKind::try_from(event.kind).ok()?)?;
        let session_id = match event.session_id.as_str() {
            "" => None,
            s => Some(Uuid::parse_str(s).ok()?),
        };
        if (kind == Kind::SessionRevoked) != session_id.is_some() {
            return None;
        }
        Some(Self {
            seq: i64::try_from(event.cursor).ok()?,
            kind,
            principal_id: Uuid::parse_str(&event.principal_id).ok()?,
            token_generation: event.token_generation,
            disabled: event.disabled,
            session_id,
            occurred_at: event
                .occurred_at
                .as_ref()
                .map_or(Timestamp::from_unix_micros(0), Timestamp::from_proto),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_survives_the_wire_and_a_broken_one_is_refused() {
        let fact = Fact {
            seq: 7,
            kind: Kind::SessionRevoked,
            principal_id: Uuid::now_v7(),
            token_generation: 3,
            disabled: false,
            session_id: Some(Uuid::now_v7()),
            occurred_at: Timestamp::from_unix_micros(1_700_000_000_000_000),
        };
        assert_eq!(Fact::from_proto(&fact.to_proto()), Some(fact.clone()));
        for &kind in Kind::ALL {
            assert_eq!(Kind::try_from(kind.as_str().to_owned()), Ok(kind));
            assert_ne!(kind.to_proto(), pb::RevocationKind::Unspecified, "{kind}");
            assert_eq!(Kind::from_proto(kind.to_proto()), Some(kind));
        }
        assert_eq!(Kind::from_proto(pb::RevocationKind::Unspecified), None);
        let mut no_session = fact.to_proto();
        no_session.session_id.clear();
        assert_eq!(Fact::from_proto(&no_session), None);
        let mut unknown = fact.to_proto();
        unknown.kind = 99;
        assert_eq!(Fact::from_proto(&unknown), None);
    }
}
