//! Who is calling, as the layer established it. Handlers read it through
//! [`current_user`] and never look at tokens or role names themselves.

use std::net::SocketAddr;

use uuid::Uuid;

use crate::{
    error::{Error, Reason, Result},
    policy::{Permission, Permissions, Role},
};

/// An authenticated caller, put into the request extensions by the layer.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: Uuid,
    pub email: String,
    pub roles: Vec<Role>,
    /// The session (`sid`) of the access token; `None` for a service token.
    pub session_id: Option<Uuid>,
    /// The token generation (`tgen`) of the access token, where known.
    pub token_generation: Option<i64>,
    permissions: Permissions,
}

impl Identity {
    pub fn new(user_id: Uuid, email: String, roles: Vec<Role>) -> Self {
        let permissions = Permissions::of_roles(&roles);
        Self {
            user_id,
            email,
            roles,
            session_id: None,
            token_generation: None,
            permissions,
        }
    }

    pub fn in_session(mut self, session_id: Option<Uuid>) -> Self {
        self.session_id = session_id;
        self
    }

    pub fn of_generation(mut self, token_generation: i64) -> Self {
        self.token_generation = Some(token_generation);
        self
    }

    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    /// The ownership check: may this caller act on something owned by
    /// `owner`, given the permission for their own things and the one for
    /// anybody's? Refusals are NOT_FOUND so that existence is not revealed.
    pub fn ensure_owner_or(
        &self,
        owner: Uuid,
        own: Permission,
        any: Permission,
        resource: &'static str,
    ) -> Result<()> {
        if self.can(any) || (owner == self.user_id && self.can(own)) {
            Ok(())
        } else {
            Err(Error::not_found(resource))
        }
    }
}

/// The request's id and peer, for logs and audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub client_addr: Option<SocketAddr>,
    /// The `user-agent` metadata, at most [`MAX_USER_AGENT`] bytes.
    pub user_agent: String,
    /// The OpenTelemetry trace the call belongs to, when traces are exported
    /// and this one is sampled: audit events name it.
    pub trace_id: Option<String>,
}

pub const MAX_USER_AGENT: usize = 256;

/// The `user-agent` of `headers`, cut to [`MAX_USER_AGENT`] bytes. Any cut
/// is on a character boundary: `to_str` admits visible ASCII only (another
/// agent is left out, as is a missing one).
pub fn user_agent(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|agent| agent[..agent.len().min(MAX_USER_AGENT)].to_owned())
        .unwrap_or_default()
}

impl RequestContext {
    pub fn client_addr_string(&self) -> String {
        self.client_addr
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    }
}

tokio::task_local! {
    /// The id of the RPC being served, so that an error built anywhere below
    /// the layer names it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The authenticated caller: the counterpart of FastAPI's
/// `current_user: CurrentUser`. Fails closed when the layer put none there.
pub fn current_user<T>(request: &tonic::Request<T>) -> Result<&Identity> {
    request
        .extensions()
        .get::<Identity>()
        .ok_or(Error::Unauthenticated {
            reason: Reason::Unauthenticated,
            message: "authentication required",
        })
}

/// The request id and peer of this request.
pub fn request_context<T>(request: &tonic::Request<T>) -> RequestContext {
    request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(value: &str) -> String {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::USER_AGENT, value.parse().unwrap());
        user_agent(&headers)
    }

    #[test]
    fn user_agents_are_cut_to_the_limit() {
        assert_eq!(agent("grpcurl/1.9"), "grpcurl/1.9");
        assert_eq!(agent(&"x".repeat(300)), "x".repeat(MAX_USER_AGENT));
        assert_eq!(
            agent(&"y".repeat(MAX_USER_AGENT)),
            "y".repeat(MAX_USER_AGENT)
        );
        assert_eq!(agent("agent-é"), "", "not visible ASCII");
        assert_eq!(user_agent(&http::HeaderMap::new()), "");
    }

    #[test]
    fn audit_rows_name_the_client_address_without_its_port() {
        let context = RequestContext {
            client_addr: Some("10.1.2.3:4567".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(context.client_addr_string(), "10.1.2.3");
        assert_eq!(RequestContext::default().client_addr_string(), "");
    }

    #[test]
    fn owners_act_on_their_own_and_holders_of_any_on_everything() {
        use Permission::{DocumentsReadAny as Any, DocumentsReadOwn as Own};
        let owner = Uuid::now_v7();
        let someone = Uuid::now_v7();
        let check = |roles: Vec<Role>, of: Uuid| {
            Identity::new(owner, "o@example.com".into(), roles)
                .ensure_owner_or(of, Own, Any, "document")
        };
        let refused = |result: Result<()>| {
            matches!(
                result,
                Err(Error::NotFound {
                    resource: "document"
                })
            )
        };
        assert!(check(vec![Role::User], owner).is_ok());
        assert!(refused(check(vec![Role::User], someone)), "not theirs");
        assert!(check(vec![Role::Verifier], someone).is_ok(), "any");
        // The owner, without the permission for their own things.
        assert!(refused(check(vec![Role::Service], owner)));
        assert!(refused(check(vec![], owner)));

        let user = Identity::new(owner, String::new(), vec![Role::User]);
        assert_eq!(user.permissions(), Permissions::of_roles(&[Role::User]));
        assert!(user.can(Own));
        assert!(!user.can(Any));
    }

    #[test]
    fn handlers_read_what_the_layer_put_into_the_request() {
        let mut request = tonic::Request::new(());
        assert!(matches!(
            current_user(&request),
            Err(Error::Unauthenticated { .. })
        ));
        assert_eq!(request_context(&request).request_id, "");
        let context = RequestContext {
            request_id: "req-1".into(),
            ..Default::default()
        };
        request.extensions_mut().insert(context);
        let caller = Uuid::now_v7();
        request
            .extensions_mut()
            .insert(Identity::new(caller, String::new(), vec![Role::User]));
        assert_eq!(request_context(&request).request_id, "req-1");
        assert_eq!(current_user(&request).unwrap().user_id, caller);
    }
}
