//! The policy table: the only place that names roles, permissions and what
//! each RPC requires.
//!
//! Deny by default: a method path that is not in [`METHODS`] is refused by the
//! layer, so a new RPC is unreachable until someone decides who may call it.
//! Roles are additive: a user holding several roles has the union of their
//! permissions.

use std::{collections::HashMap, fmt, str::FromStr, sync::LazyLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    User,
    Verifier,
    Auditor,
    Admin,
    /// Service accounts only (another service calling auth-service): reads
    /// the revocation feed. A user is never given it.
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::User,
        Role::Verifier,
        Role::Auditor,
        Role::Admin,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Verifier => "verifier",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// The role every new account gets.
    pub const DEFAULT: Role = Role::User;

    /// The role whose last holder cannot give it up.
    pub const ADMIN: Role = Role::Admin;

    pub fn permissions(self) -> Permissions {
        use Permission::*;
        match self {
            Role::User => Permissions::of(&[DocumentsCreate, DocumentsReadOwn, DocumentsDeleteOwn]),
            Role::Verifier => Role::User
                .permissions()
                .union(Permissions::of(&[DocumentsReadAny, DocumentsReview])),
            Role::Auditor => {
                Permissions::of(&[DocumentsReadOwn, DocumentsReadAny, UsersRead, AuditRead])
            }
            Role::Admin => Permissions::of(&Permission::ALL).without(RevocationsRead),
            Role::Service => Permissions::of(&[RevocationsRead]),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    DocumentsCreate,
    DocumentsReadOwn,
    DocumentsReadAny,
    DocumentsReview,
    DocumentsDeleteOwn,
    DocumentsDeleteAny,
    UsersRead,
    UsersManage,
    AuditRead,
    /// Any user's sessions: list and end them.
    SessionsManage,
    ServiceAccountsManage,
    /// The revocation feed (the `service` role only).
    RevocationsRead,
}

impl Permission {
    pub const ALL: [Permission; 12] = [
        Permission::DocumentsCreate,
        Permission::DocumentsReadOwn,
        Permission::DocumentsReadAny,
        Permission::DocumentsReview,
        Permission::DocumentsDeleteOwn,
        Permission::DocumentsDeleteAny,
        Permission::UsersRead,
        Permission::UsersManage,
        Permission::AuditRead,
        Permission::SessionsManage,
        Permission::ServiceAccountsManage,
        Permission::RevocationsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::DocumentsCreate => "documents:create",
            Permission::DocumentsReadOwn => "documents:read_own",
            Permission::DocumentsReadAny => "documents:read_any",
            Permission::DocumentsReview => "documents:review",
            Permission::DocumentsDeleteOwn => "documents:delete_own",
            Permission::DocumentsDeleteAny => "documents:delete_any",
            Permission::UsersRead => "users:read",
            Permission::UsersManage => "users:manage",
            Permission::AuditRead => "audit:read",
            Permission::SessionsManage => "sessions:manage",
            Permission::ServiceAccountsManage => "service_accounts:manage",
            Permission::RevocationsRead => "revocations:read",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of permissions (a bit set: checking one is a single AND).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u16);

impl Permissions {
    pub fn of(list: &[Permission]) -> Self {
        Self(list.iter().fold(0, |acc, p| acc | p.bit()))
    }

    pub fn of_roles(roles: &[Role]) -> Self {
        roles
            .iter()
            .fold(Self::default(), |acc, r| acc.union(r.permissions()))
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn without(self, p: Permission) -> Self {
        Self(self.0 & !p.bit())
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
}

/// What calling one RPC requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No access token: the credential, if any, is in the message.
    Public,
    /// Any valid access token.
    Authenticated,
    /// An access token whose roles grant at least one of these permissions;
    /// the handler narrows further (own versus any).
    AnyOf(&'static [Permission]),
}

use Permission::*;

const AUTH: &str = "/docverify.auth.v1.AuthService/";
const USERS: &str = "/docverify.auth.v1.UserService/";
const DOCUMENTS: &str = "/docverify.document.v1.DocumentService/";
const AUDIT: &str = "/docverify.audit.v1.AuditService/";
const REVOCATIONS: &str = "/docverify.auth.v1.RevocationService/";
const SERVICE_ACCOUNTS: &str = "/docverify.auth.v1.ServiceAccountService/";

/// Every RPC of both services, by service prefix and method name.
pub const METHODS: &[(&str, &str, Access)] = &[
    (AUTH, "Register", Access::Public),
    (AUTH, "Login", Access::Public),
    (AUTH, "RefreshToken", Access::Public),
    (AUTH, "Logout", Access::Public),
    (AUTH, "ValidateToken", Access::Public),
    (AUTH, "ListSigningKeys", Access::Public),
    (AUTH, "GetCurrentUser", Access::Authenticated),
    (AUTH, "ChangePassword", Access::Authenticated),
    (AUTH, "ListSessions", Access::Authenticated),
    (AUTH, "RevokeSession", Access::Authenticated),
    (AUTH, "RevokeAllSessions", Access::Authenticated),
    (AUTH, "IssueServiceToken", Access::Public),
    (USERS, "ListUsers", Access::AnyOf(&[UsersRead])),
    (USERS, "GetUser", Access::AnyOf(&[UsersRead])),
    (USERS, "SetUserRoles", Access::AnyOf(&[UsersManage])),
    (USERS, "DisableUser", Access::AnyOf(&[UsersManage])),
    (USERS, "EnableUser", Access::AnyOf(&[UsersManage])),
    (USERS, "UnlockUser", Access::AnyOf(&[UsersManage])),
    (USERS, "ListUserSessions", Access::AnyOf(&[SessionsManage])),
    (USERS, "RevokeUserSession", Access::AnyOf(&[SessionsManage])),
    (
        USERS,
        "RevokeAllUserSessions",
        Access::AnyOf(&[SessionsManage]),
    ),
    (
        REVOCATIONS,
        "WatchRevocations",
        Access::AnyOf(&[RevocationsRead]),
    ),
    (
        REVOCATIONS,
        "ListRevocationState",
        Access::AnyOf(&[RevocationsRead]),
    ),
    (
        SERVICE_ACCOUNTS,
        "CreateServiceAccount",
        Access::AnyOf(&[ServiceAccountsManage]),
    ),
    (
        SERVICE_ACCOUNTS,
        "ListServiceAccounts",
        Access::AnyOf(&[ServiceAccountsManage]),
    ),
    (
        SERVICE_ACCOUNTS,
        "RotateServiceAccountSecret",
        Access::AnyOf(&[ServiceAccountsManage]),
    ),
    (
        SERVICE_ACCOUNTS,
        "RevokeServiceAccountSecret",
        Access::AnyOf(&[ServiceAccountsManage]),
    ),
    (
        SERVICE_ACCOUNTS,
        "DisableServiceAccount",
        Access::AnyOf(&[ServiceAccountsManage]),
    ),
    (
        DOCUMENTS,
        "UploadDocument",
        Access::AnyOf(&[DocumentsCreate]),
    ),
    (
        DOCUMENTS,
        "GetDocument",
        Access::AnyOf(&[DocumentsReadOwn, DocumentsReadAny]),
    ),
    (
        DOCUMENTS,
        "DownloadDocument",
        Access::AnyOf(&[DocumentsReadOwn, DocumentsReadAny]),
    ),
    (
        DOCUMENTS,
        "ListDocuments",
        Access::AnyOf(&[DocumentsReadOwn, DocumentsReadAny]),
    ),
    (
        DOCUMENTS,
        "VerifyDocument",
        Access::AnyOf(&[DocumentsReview]),
    ),
    (
        DOCUMENTS,
        "RejectDocument",
        Access::AnyOf(&[DocumentsReview]),
    ),
    (
        DOCUMENTS,
        "DeleteDocument",
        Access::AnyOf(&[DocumentsDeleteOwn, DocumentsDeleteAny]),
    ),
    (
        DOCUMENTS,
        "GetReceipt",
        Access::AnyOf(&[DocumentsReadOwn, DocumentsReadAny]),
    ),
    (AUDIT, "ListAuditEvents", Access::AnyOf(&[AuditRead])),
    (AUDIT, "VerifyAuditChain", Access::AnyOf(&[AuditRead])),
    (AUDIT, "GetCheckpoint", Access::Public),
    (AUDIT, "GetInclusionProof", Access::AnyOf(&[AuditRead])),
    (AUDIT, "GetConsistencyProof", Access::AnyOf(&[AuditRead])),
    (AUDIT, "WatchAuditEvents", Access::AnyOf(&[AuditRead])),
    ("/grpc.health.v1.Health/", "Check", Access::Public),
    ("/grpc.health.v1.Health/", "Watch", Access::Public),
    (
        "/grpc.reflection.v1.ServerReflection/",
        "ServerReflectionInfo",
        Access::Public,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/",
        "ServerReflectionInfo",
        Access::Public,
    ),
];

/// What the layer knows of one method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// `/package.Service/Method`: also the method's metrics label, so that
    /// labels are bounded by this table, whatever paths callers send.
    pub path: &'static str,
    pub access: Access,
    /// Whether either side streams (read from the served descriptors): such
    /// calls have a budget of their own in the layer.
    pub streaming: bool,
}

/// The label of every path that is not in the table.
pub const UNKNOWN_METHOD: &str = "unknown";

static BY_PATH: LazyLock<HashMap<String, (Access, bool)>> = LazyLock::new(|| {
    let streaming = streaming_methods();
    METHODS
        .iter()
        .map(|(service, method, access)| {
            let path = format!("{service}{method}");
            let streams = streaming.contains(&path);
            (path, (*access, streams))
        })
        .collect()
});

/// The method at `path` (`/package.Service/Method`); `None` means it is not
/// in the table and must be refused.
pub fn method(path: &str) -> Option<Method> {
    BY_PATH
        .get_key_value(path)
        .map(|(path, (access, streaming))| Method {
            path: path.as_str(),
            access: *access,
            streaming: *streaming,
        })
}

/// Every method of the table.
pub fn methods() -> impl Iterator<Item = Method> {
    BY_PATH.iter().map(|(path, (access, streaming))| Method {
        path: path.as_str(),
        access: *access,
        streaming: *streaming,
    })
}

/// What the method at `path` requires; `None` means refused.
pub fn access(path: &str) -> Option<Access> {
    method(path).map(|m| m.access)
}

impl Access {
    pub fn allows(self, granted: Permissions) -> bool {
        match self {
            Access::Public | Access::Authenticated => true,
            Access::AnyOf(needed) => needed.iter().any(|p| granted.contains(*p)),
        }
    }
}

/// The methods of the descriptor sets both servers serve (ours, health and
/// reflection), as `/package.Service/Method` with whether either side streams.
fn descriptor_methods() -> Vec<(String, bool)> {
    use prost::Message;
    [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .iter()
    .filter_map(|bytes| prost_types::FileDescriptorSet::decode(*bytes).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("/{package}.{}/", service.name());
            service.method.into_iter().map(move |m| {
                let streams = m.client_streaming() || m.server_streaming();
                (format!("{prefix}{}", m.name()), streams)
            })
        })
    })
    .collect()
}

/// Every RPC that both servers expose, as `/package.Service/Method`.
pub fn served_methods() -> Vec<String> {
    descriptor_methods()
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

fn streaming_methods() -> std::collections::HashSet<String> {
    descriptor_methods()
        .into_iter()
        .filter_map(|(path, streams)| streams.then_some(path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_rpc_has_exactly_one_policy_entry() {
        let served = served_methods();
        assert!(
            served.len() >= METHODS.len(),
            "descriptor sets decoded: {served:?}"
        );
        for path in &served {
            assert!(
                access(path).is_some(),
                "{path} is served but missing from the policy table"
            );
        }
        for (service, method, _) in METHODS {
            let path = format!("{service}{method}");
            assert!(
                served.contains(&path),
                "{path} is in the policy table but served by nobody"
            );
        }
        assert_eq!(BY_PATH.len(), METHODS.len(), "a method is listed twice");
    }

    #[test]
    fn roles_grant_what_the_design_says() {
        use Permission::*;
        let user = Role::User.permissions();
        assert!(
            user.contains(DocumentsCreate)
                && user.contains(DocumentsReadOwn)
                && user.contains(DocumentsDeleteOwn)
        );
        assert!(!user.contains(DocumentsReadAny) && !user.contains(UsersRead));
        let verifier = Role::Verifier.permissions();
        assert!(
            verifier.contains(DocumentsReview)
                && verifier.contains(DocumentsReadAny)
                && verifier.contains(DocumentsCreate)
        );
        let auditor = Role::Auditor.permissions();
        assert!(
            auditor.contains(AuditRead)
                && auditor.contains(UsersRead)
                && auditor.contains(DocumentsReadAny)
        );
        assert!(
            !auditor.contains(DocumentsCreate)
                && !auditor.contains(DocumentsReview)
                && !auditor.contains(UsersManage)
        );
        assert!(
            Permission::ALL
                .iter()
                .filter(|p| **p != RevocationsRead)
                .all(|p| Role::Admin.permissions().contains(*p))
        );
        // The feed is for services, not people.
        assert!(
            Role::ALL
                .iter()
                .all(|r| r.permissions().contains(RevocationsRead) == (*r == Role::Service))
        );
        assert_eq!(
            Role::Service.permissions(),
            Permissions::of(&[RevocationsRead])
        );
        assert_eq!(access("/docverify.auth.v1.AuthService/Nope"), None);
    }

    #[test]
    fn roles_held_together_grant_every_permission_of_each() {
        use Permission::*;
        // Overlapping roles: a union that let shared bits cancel would take
        // the shared permissions away.
        let both = Permissions::of_roles(&[Role::User, Role::Verifier]);
        assert!(both.contains(DocumentsCreate) && both.contains(DocumentsReview));
        let both = Permissions::of_roles(&[Role::Verifier, Role::Auditor]);
        assert!(both.contains(DocumentsReadAny) && both.contains(AuditRead));
        assert_eq!(
            Permissions::of(&[UsersRead, UsersRead]),
            Permissions::of(&[UsersRead])
        );
    }

    #[test]
    fn permission_names_are_distinct_resource_actions() {
        let mut seen = std::collections::HashSet::new();
        for p in Permission::ALL {
            let name = p.as_str();
            assert!(seen.insert(name), "{name} twice");
            let (resource, action) = name.split_once(':').expect("resource:action");
            assert!(
                [resource, action].iter().all(|part| !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
                "{name}"
            );
        }
    }

    #[test]
    fn streaming_methods_are_known_as_such() {
        let streams = |path: &str| method(path).map(|m| m.streaming);
        assert_eq!(streams("/grpc.health.v1.Health/Watch"), Some(true));
        assert_eq!(streams("/grpc.health.v1.Health/Check"), Some(false));
        assert_eq!(
            streams("/docverify.document.v1.DocumentService/DownloadDocument"),
            Some(true)
        );
        assert_eq!(
            streams("/docverify.document.v1.DocumentService/UploadDocument"),
            Some(true)
        );
        assert_eq!(
            streams("/docverify.document.v1.DocumentService/GetDocument"),
            Some(false)
        );
        assert_eq!(
            method("/docverify.auth.v1.AuthService/Login").map(|m| m.path),
            Some("/docverify.auth.v1.AuthService/Login")
        );
    }
}
