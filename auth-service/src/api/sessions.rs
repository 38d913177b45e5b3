//! Sessions a person can see and end: a session is a refresh-token family.
//! The same functions serve the caller's own RPCs (AuthService) and an
//! admin's for any user (UserService, `sessions:manage`). Ending a session
//! revokes its refresh tokens at once and writes a revocation fact, so its
//! access tokens stop working at every verifier within the bound too.

use serde_json::json;
use shared::{
    Error, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, RequestContext},
    page::PageSize,
    proto::auth::v1 as pb,
    revocation::Kind,
};
use uuid::Uuid;

use crate::{
    revocation::log::{self, NewFact},
    state::State,
    token::refresh,
    users,
};

/// One page of `user`'s live sessions, newest first; `current` is marked.
pub(super) async fn list(
    state: &State,
    viewer: &Identity,
    user: Uuid,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<pb::Session>, String)> {
    let size = PageSize::parse(page_size)?;
    let scope = format!("sessions|{}|{user}", viewer.user_id);
    let tokens = &state.page_tokens;
    let before = tokens.open_uuid(&scope, page_token)?;
    let mut conn = state.db.read().await?;
    if users::by_id(conn.conn(), user).await?.is_none() {
        return Err(Error::not_found("user"));
    }
    let now = state.clock.now();
    let mut rows = refresh::live_families(conn.conn(), user, before, size.fetch(), now).await?;
    let next = tokens.next_page(&scope, &mut rows, size, |s| s.id.as_bytes().to_vec());
    let sessions = rows
        .into_iter()
        .map(|s| pb::Session {
            id: s.id.to_string(),
            created_at: Some(s.created_at.to_proto()),
            last_used_at: s.last_used_at.map(|t| t.to_proto()),
            client_address: s.client_addr,
            user_agent: s.user_agent,
            current: viewer.session_id == Some(s.id),
        })
        .collect();
    Ok((sessions, next))
}

/// Ends `session` of `user`. NOT_FOUND when it is not theirs or not live.
pub(super) async fn revoke_one(
    state: &State,
    ctx: &RequestContext,
    actor: &Identity,
    user: Uuid,
    session: Uuid,
) -> Result<()> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !refresh::revoke_users_family(tx.conn(), user, session, now).await? {
        return Err(Error::not_found("session"));
    }
    let fact = log::append(&mut tx, NewFact::session(user, session), now).await?;
    let event = Event::new(
        Action::SessionRevoked,
        Actor::from(actor),
        "token_family",
        session,
    )
    .details(json!({ "user_id": user.to_string() }));
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    state.published(&fact);
    Ok(())
}

/// Ends every session of `user` but `keep`; how many ended. Without `keep`
/// the user's generation and epoch move too, so a login in flight is
/// outlived neither; with it, each other session gets a fact of its own.
pub(super) async fn revoke_all(
    state: &State,
    ctx: &RequestContext,
    actor: &Identity,
    user: Uuid,
    keep: Option<Uuid>,
) -> Result<i64> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let ended = match keep {
        None => users::end_sessions(tx.conn(), user, now).await.map(Some)?,
        Some(_) => {
            users::lock(tx.conn(), user)
                .await?
                .ok_or(Error::not_found("user"))?;
            None
        }
    };
    let revoked = refresh::revoke_user(tx.conn(), user, keep, now)
        .await?
        .sessions;
    let mut facts = Vec::new();
    match ended {
        Some(u) => facts.push(
            log::append(
                &mut tx,
                NewFact::principal(
                    Kind::AllSessionsRevoked,
                    user,
                    u.token_generation,
                    u.disabled,
                ),
                now,
            )
            .await?,
        ),
        None => {
            for session in &revoked {
                facts.push(log::append(&mut tx, NewFact::session(user, *session), now).await?);
            }
        }
    }
    let count = revoked.len() as i64;
    let event = Event::new(Action::SessionsRevoked, Actor::from(actor), "user", user)
        .details(json!({ "revoked_sessions": count, "kept_session": keep.map(|k| k.to_string()) }));
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    for fact in &facts {
        state.published(fact);
    }
    Ok(count)
}
