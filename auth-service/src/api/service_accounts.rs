//! `docverify.auth.v1.ServiceAccountService` (`service_accounts:manage`)
//! and the client credentials grant (`AuthService.IssueServiceToken`).
//! Every change is audited; revoking a secret or disabling an account also
//! revokes the account's tokens (a generation bump with its fact).

use std::sync::Arc;

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    db::{Timestamp, Tx},
    identity::{RequestContext, current_user, request_context},
    page::PageSize,
    policy::Role,
    proto::auth::v1::{self as pb, service_account_service_server::ServiceAccountService},
    revocation::Kind,
    validate::{AllFields, uuid},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::users::parse_roles;
use crate::{
    revocation::log::{self, NewFact},
    service_accounts::{self as accounts, Account},
    state::State,
    token::mint::{self, Subject},
};

#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountsApi {
    state: Arc<State>,
}

impl ServiceAccountsApi {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// A service account name: 1 to 64 of `a-z`, `0-9` and `-`.
fn parse_name(field: &str, raw: &str) -> Result<String> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(Error::invalid(
            field,
            "1 to 64 characters: lower-case letters, digits and `-`",
        ))
    }
}

fn parse_account_roles(raw: &[String]) -> Result<Vec<Role>> {
    if raw.is_empty() {
        return Err(Error::invalid("roles", "at least one role is required"));
    }
    parse_roles(raw, true)
}

const BAD_CLIENT: Error = Error::Unauthenticated {
    reason: Reason::InvalidClient,
    message: "client id or secret is invalid, or the service account is disabled",
};

/// Creates the account `id` inside the caller's transaction, audited;
/// `None` when it exists already.
pub(crate) async fn create(
    tx: &mut Tx,
    ctx: &RequestContext,
    actor: &Actor,
    (id, name, roles): (Uuid, &str, &[Role]),
    now: Timestamp,
) -> Result<Option<Account>> {
    let Some(created) = accounts::insert(tx.conn(), id, name, roles, now).await? else {
        return Ok(None);
    };
    let event = Event::new(
        Action::ServiceAccountCreated,
        actor.clone(),
        "service_account",
        id,
    )
    .details(json!({ "name": name, "roles": created.role_names() }));
    audit::append(tx, ctx, now, event).await?;
    Ok(Some(created))
}

/// Adds `secret` to the account `id` unless it has it already, and keeps
/// only the newest two valid, audited; the new secret's id when added. The
/// caller holds the account's row lock where two additions could race.
pub(crate) async fn add_secret(
    tx: &mut Tx,
    ctx: &RequestContext,
    actor: &Actor,
    id: Uuid,
    secret: &str,
    now: Timestamp,
) -> Result<Option<Uuid>> {
    let Some(secret_id) = accounts::add_secret(tx.conn(), id, secret, now).await? else {
        return Ok(None);
    };
    let retired = accounts::keep_newest_secrets(tx.conn(), id, now).await?;
    let event = Event::new(
        Action::ServiceAccountSecretAdded,
        actor.clone(),
        "service_account",
        id,
    )
    .details(json!({ "secret_id": secret_id.to_string(), "retired_secrets": retired }));
    audit::append(tx, ctx, now, event).await?;
    Ok(Some(secret_id))
}

/// Revokes the account's tokens (and disables it when asked), with the
/// fact and audit event, inside the caller's transaction.
async fn revoke_tokens(
    tx: &mut Tx,
    account: Uuid,
    disable: bool,
    now: Timestamp,
) -> Result<(Account, shared::revocation::Fact)> {
    let after = accounts::revoke_tokens(tx.conn(), account, disable, now).await?;
    let fact = NewFact::principal(
        Kind::ServiceAccountRevoked,
        account,
        after.token_generation,
        after.disabled,
    );
    let fact = log::append(tx, fact, now).await?;
    Ok((after, fact))
}

impl ServiceAccountsApi {
    async fn respond(&self, account: &Account) -> Result<pb::ServiceAccount> {
        let secrets = accounts::secrets(self.state.db.read().await?.conn(), account.id).await?;
        Ok(account.to_proto(&secrets))
    }
}

#[tonic::async_trait]
impl ServiceAccountService for ServiceAccountsApi {
    #[tracing::instrument(skip_all)]
    async fn create_service_account(
        &self,
        request: Request<pb::CreateServiceAccountRequest>,
    ) -> Result<Response<pb::CreateServiceAccountResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let req = request.get_ref();
        let (name, roles) = (
            parse_name("name", &req.name),
            parse_account_roles(&req.roles),
        )
            .all()?;
        let secret = accounts::generate_secret()?;
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        let actor = Actor::from(me);
        let id = Uuid::now_v7();
        let account = create(&mut tx, &ctx, &actor, (id, &name, &roles), now)
            .await?
            .ok_or_else(|| Error::internal("a fresh service account id was taken"))?;
        add_secret(&mut tx, &ctx, &actor, id, &secret, now).await?;
        tx.commit().await?;
        Ok(Response::new(pb::CreateServiceAccountResponse {
            account: Some(self.respond(&account).await?),
            client_secret: secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_service_accounts(
        &self,
        request: Request<pb::ListServiceAccountsRequest>,
    ) -> Result<Response<pb::ListServiceAccountsResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let size = PageSize::parse(req.page_size)?;
        let scope = format!("service_accounts|{}", me.user_id);
        let tokens = &self.state.page_tokens;
        let before = tokens.open_uuid(&scope, &req.page_token)?;
        let mut conn = self.state.db.read().await?;
        let mut rows = accounts::list(conn.conn(), before, size.fetch()).await?;
        let next_page_token =
            tokens.next_page(&scope, &mut rows, size, |a| a.id.as_bytes().to_vec());
        let mut listed = Vec::with_capacity(rows.len());
        for account in &rows {
            let secrets = accounts::secrets(conn.conn(), account.id).await?;
            listed.push(account.to_proto(&secrets));
        }
        Ok(Response::new(pb::ListServiceAccountsResponse {
            accounts: listed,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_service_account_secret(
        &self,
        request: Request<pb::RotateServiceAccountSecretRequest>,
    ) -> Result<Response<pb::RotateServiceAccountSecretResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let id = uuid("client_id", &request.get_ref().client_id)?;
        let secret = accounts::generate_secret()?;
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        // Locked: two rotations at once keep two secrets, not three.
        let account = accounts::lock(tx.conn(), id).await?;
        add_secret(&mut tx, &ctx, &Actor::from(me), id, &secret, now).await?;
        tx.commit().await?;
        Ok(Response::new(pb::RotateServiceAccountSecretResponse {
            account: Some(self.respond(&account).await?),
            client_secret: secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_service_account_secret(
        &self,
        request: Request<pb::RevokeServiceAccountSecretRequest>,
    ) -> Result<Response<pb::RevokeServiceAccountSecretResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let req = request.get_ref();
        let (id, secret_id) = (
            uuid("client_id", &req.client_id),
            uuid("secret_id", &req.secret_id),
        )
            .all()?;
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        accounts::lock(tx.conn(), id).await?;
        if !accounts::revoke_secret(tx.conn(), id, secret_id, now).await? {
            return Err(Error::not_found("secret").into());
        }
        let (account, fact) = revoke_tokens(&mut tx, id, false, now).await?;
        let event = Event::new(
            Action::ServiceAccountSecretRevoked,
            Actor::from(me),
            "service_account",
            id,
        )
        .details(json!({ "secret_id": secret_id.to_string() }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        self.state.published(&fact);
        Ok(Response::new(pb::RevokeServiceAccountSecretResponse {
            account: Some(self.respond(&account).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn disable_service_account(
        &self,
        request: Request<pb::DisableServiceAccountRequest>,
    ) -> Result<Response<pb::DisableServiceAccountResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let id = uuid("client_id", &request.get_ref().client_id)?;
        let now = self.state.clock.now();
        let mut tx = self.state.db.begin().await?;
        accounts::lock(tx.conn(), id).await?;
        let (account, fact) = revoke_tokens(&mut tx, id, true, now).await?;
        let event = Event::new(
            Action::ServiceAccountDisabled,
            Actor::from(me),
            "service_account",
            id,
        );
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        self.state.published(&fact);
        Ok(Response::new(pb::DisableServiceAccountResponse {
            account: Some(self.respond(&account).await?),
        }))
    }
}

/// The client credentials grant: a token for the account whose id and
/// valid secret these are. Every refusal is the same INVALID_CLIENT.
pub(super) async fn issue_token(
    state: &State,
    ctx: &RequestContext,
    req: &pb::IssueServiceTokenRequest,
) -> Result<pb::IssueServiceTokenResponse> {
    let (id, secret) = (
        uuid("client_id", &req.client_id),
        required_secret(&req.client_secret),
    )
        .all()?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let Some(account) = accounts::authenticate(tx.conn(), id, secret).await? else {
        return Err(BAD_CLIENT);
    };
    let subject = Subject {
        id: account.id,
        email: account.principal_name(),
        roles: account.role_names(),
        token_generation: account.token_generation,
        session_id: None,
    };
    let access_token = mint::access_token(state, subject, now)?;
    let event = Event::new(
        Action::ServiceTokenIssued,
        Actor::from(&account),
        "service_account",
        id,
    );
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok(pb::IssueServiceTokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.access_ttl.as_secs() as i64,
    })
}

fn required_secret(raw: &str) -> Result<&str> {
    if raw.is_empty() {
        return Err(Error::invalid("client_secret", "is required"));
    }
    if raw.len() > 256 {
        return Err(Error::invalid("client_secret", "at most 256 characters"));
    }
    Ok(raw)
}
