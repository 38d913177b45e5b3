//! `docverify.auth.v1.UserService`: reads need `users:read`, changes
//! `users:manage` (the layer checked that before we get here).

use std::sync::Arc;

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, current_user, request_context},
    page::PageSize,
    policy::Role,
    proto::auth::v1::{self as pb, user_service_server::UserService},
    validate::{AllFields, UserId, Violations},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::sessions;
use crate::{
    revocation::{self, log::NewFact},
    state::State,
    throttle,
    token::refresh,
    users,
};
use shared::revocation::Kind;

#[derive(Debug, Clone)]
pub(crate) struct UsersApi {
    state: Arc<State>,
}

impl UsersApi {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// A parsed `SetUserRolesRequest`.
#[derive(Debug)]
struct SetUserRoles {
    id: Uuid,
    roles: Vec<Role>,
}

impl TryFrom<&pb::SetUserRolesRequest> for SetUserRoles {
    type Error = Error;

    fn try_from(req: &pb::SetUserRolesRequest) -> Result<Self> {
        let (UserId(id), roles) = (
            UserId::parse("user_id", &req.user_id),
            parse_roles(&req.roles, false),
        )
            .all()?;
        Ok(Self { id, roles })
    }
}

/// Role names; `service` only for a service account.
pub(super) fn parse_roles(raw: &[String], service_account: bool) -> Result<Vec<Role>> {
    let mut v = Violations::default();
    let roles: Vec<Role> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            v.check(
                name.trim()
                    .parse::<Role>()
                    .map_err(|_| Error::invalid(&format!("roles[{i}]"), "unknown role"))
                    .and_then(|role| {
                        if role == Role::Service && !service_account {
                            Err(Error::invalid(
                                &format!("roles[{i}]"),
                                "`service` is for service accounts, not users",
                            ))
                        } else {
                            Ok(role)
                        }
                    }),
            )
        })
        .collect();
    v.into_result()?;
    Ok(roles)
}

/// The system never loses its last admin: an admin cannot lock themselves out.
fn refuse_self(me: &Identity, target: Uuid, message: &'static str) -> Result<()> {
    if me.user_id == target {
        return Err(Error::FailedPrecondition {
            reason: Reason::LastAdminProtection,
            message,
        });
    }
    Ok(())
}

impl UsersApi {
    async fn set_disabled(&self, request: Request<String>, disabled: bool) -> Result<users::User> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let UserId(id) = UserId::parse("user_id", request.get_ref())?;
        if disabled {
            refuse_self(me, id, "you cannot disable your own account")?;
        }
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        if disabled {
            let admins = users::lock_admins(tx.conn()).await?;
            let target = users::lock(tx.conn(), id)
                .await?
                .ok_or(Error::not_found("user"))?;
            users::ensure_other_admin(&admins, &target)?;
        }
        let user = users::set_disabled(tx.conn(), id, disabled, now).await?;
        let kind = if disabled {
            Kind::UserDisabled
        } else {
            Kind::UserEnabled
        };
        let (action, details) = if disabled {
            let revoked = refresh::revoke_user(tx.conn(), id, None, now).await?.tokens;
            (
                Action::UserDisabled,
                json!({ "revoked_refresh_tokens": revoked }),
            )
        } else {
            (Action::UserEnabled, json!({}))
        };
        let fact = NewFact::principal(kind, id, user.token_generation, user.disabled);
        let fact = revocation::log::append(&mut tx, fact, now).await?;
        let event = Event::new(action, Actor::from(me), "user", id).details(details);
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        self.state.published(&fact);
        Ok(user)
    }
}

#[tonic::async_trait]
impl UserService for UsersApi {
    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let size = PageSize::parse(req.page_size)?;
        let scope = format!("users|{}", me.user_id);
        let tokens = &self.state.page_tokens;
        let before = tokens.open_uuid(&scope, &req.page_token)?;
        let mut rows =
            users::list(self.state.db.read().await?.conn(), before, size.fetch()).await?;
        let next_page_token =
            tokens.next_page(&scope, &mut rows, size, |u| u.id.as_bytes().to_vec());
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.iter().map(users::User::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let UserId(id) = UserId::parse("user_id", &request.get_ref().user_id)?;
        let user = users::by_id(self.state.db.read().await?.conn(), id)
            .await?
            .ok_or(Error::not_found("user"))?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_roles(
        &self,
        request: Request<pb::SetUserRolesRequest>,
    ) -> Result<Response<pb::SetUserRolesResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let SetUserRoles { id, roles } = request.get_ref().try_into()?;
        if !roles.contains(&Role::ADMIN) {
            refuse_self(me, id, "you cannot remove your own admin role")?;
        }
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        // Locked before the target (see `lock_admins`), only when the change
        // could take the admin role away.
        let admins = if roles.contains(&Role::ADMIN) {
            Vec::new()
        } else {
            users::lock_admins(tx.conn()).await?
        };
        // Locked, so that `old_roles` is what this change replaced.
        let before = users::lock(tx.conn(), id)
            .await?
            .ok_or(Error::not_found("user"))?;
        if !roles.contains(&Role::ADMIN) {
            users::ensure_other_admin(&admins, &before)?;
        }
        let after = users::set_roles(tx.conn(), id, &roles, now).await?;
        let fact = NewFact::principal(
            Kind::RolesChanged,
            id,
            after.token_generation,
            after.disabled,
        );
        let fact = revocation::log::append(&mut tx, fact, now).await?;
        let event = Event::new(Action::RolesChanged, Actor::from(me), "user", id)
            .details(json!({ "old_roles": before.role_names(), "new_roles": after.role_names() }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        self.state.published(&fact);
        Ok(Response::new(pb::SetUserRolesResponse {
            user: Some(after.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn disable_user(
        &self,
        request: Request<pb::DisableUserRequest>,
    ) -> Result<Response<pb::DisableUserResponse>, Status> {
        let user = self.set_disabled(request.map(|r| r.user_id), true).await?;
        Ok(Response::new(pb::DisableUserResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn enable_user(
        &self,
        request: Request<pb::EnableUserRequest>,
    ) -> Result<Response<pb::EnableUserResponse>, Status> {
        let user = self.set_disabled(request.map(|r| r.user_id), false).await?;
        Ok(Response::new(pb::EnableUserResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unlock_user(
        &self,
        request: Request<pb::UnlockUserRequest>,
    ) -> Result<Response<pb::UnlockUserResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let UserId(id) = UserId::parse("user_id", &request.get_ref().user_id)?;
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        let user = users::by_id(tx.conn(), id)
            .await?
            .ok_or(Error::not_found("user"))?;
        throttle::reset(&mut tx, &ctx, &user.email, now).await?;
        audit::append(
            &mut tx,
            &ctx,
            now,
            Event::new(Action::UserUnlocked, Actor::from(me), "user", id),
        )
        .await?;
        tx.commit().await?;
        Ok(Response::new(pb::UnlockUserResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_user_sessions(
        &self,
        request: Request<pb::ListUserSessionsRequest>,
    ) -> Result<Response<pb::ListUserSessionsResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let UserId(id) = UserId::parse("user_id", &req.user_id)?;
        let (sessions, next_page_token) =
            sessions::list(&self.state, me, id, req.page_size, &req.page_token).await?;
        Ok(Response::new(pb::ListUserSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_session(
        &self,
        request: Request<pb::RevokeUserSessionRequest>,
    ) -> Result<Response<pb::RevokeUserSessionResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let req = request.get_ref();
        let (UserId(id), session) = (
            UserId::parse("user_id", &req.user_id),
            shared::validate::uuid("session_id", &req.session_id),
        )
            .all()?;
        sessions::revoke_one(&self.state, &ctx, me, id, session).await?;
        Ok(Response::new(pb::RevokeUserSessionResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_all_user_sessions(
        &self,
        request: Request<pb::RevokeAllUserSessionsRequest>,
    ) -> Result<Response<pb::RevokeAllUserSessionsResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let UserId(id) = UserId::parse("user_id", &request.get_ref().user_id)?;
        let revoked_sessions = sessions::revoke_all(&self.state, &ctx, me, id, None).await?;
        Ok(Response::new(pb::RevokeAllUserSessionsResponse {
            revoked_sessions,
        }))
    }
}
