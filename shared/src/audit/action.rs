//! Every action the trail records, in one place: what auditors filter on
//! (`ListAuditEvents.action`), so an action is never spelled twice.

crate::catalogue::catalogue! {
    /// What was done (`noun.verb_past`, lower case on the wire).
    pub enum Action {
        // auth-service: sessions
        /// A login with a wrong password, an unknown email or a disabled account.
        LoginFailed => "auth.login_failed",
        /// A login that issued a session.
        LoginSucceeded => "auth.login_succeeded",
        /// A refresh token family ended by its holder.
        Logout => "auth.logout",
        /// An email's failed logins crossed the threshold (one per window).
        LoginThrottled => "auth.login_throttled",
        /// A client address's failed logins crossed the threshold (one per window).
        AddressThrottled => "auth.address_throttled",
        /// A refresh token rotated.
        TokenRefreshed => "token.refreshed",
        /// A rotated-out refresh token presented again: its family is revoked.
        TokenReuseDetected => "token.reuse_detected",
        /// A refresh presented to a family that had been revoked.
        TokenFamilyRevoked => "token.family_revoked",
        /// A session ended through RevokeSession or RevokeUserSession.
        SessionRevoked => "session.revoked",
        /// Every session of a user ended (RevokeAllSessions, RevokeAllUserSessions).
        SessionsRevoked => "session.all_revoked",

        // auth-service: accounts
        /// An account created (by registration, bootstrap or `create-admin`).
        UserRegistered => "user.registered",
        /// A password changed by its owner.
        PasswordChanged => "user.password_changed",
        /// An account disabled by an admin.
        UserDisabled => "user.disabled",
        /// An account enabled again by an admin.
        UserEnabled => "user.enabled",
        /// Roles granted or removed.
        RolesChanged => "user.roles_changed",
        /// A service account created (by an admin or the bootstrap).
        ServiceAccountCreated => "service_account.created",
        /// A service account secret added (rotation or bootstrap).
        ServiceAccountSecretAdded => "service_account.secret_added",
        /// A service account secret revoked.
        ServiceAccountSecretRevoked => "service_account.secret_revoked",
        /// A service account disabled.
        ServiceAccountDisabled => "service_account.disabled",
        /// A service access token issued (client credentials grant).
        ServiceTokenIssued => "service_account.token_issued",
        /// An admin cleared an account's login throttle.
        UserUnlocked => "user.unlocked",

        // document-service
        /// A document stored.
        DocumentUploaded => "document.uploaded",
        /// A verifier verified a pending document.
        DocumentVerified => "document.verified",
        /// A verifier rejected a pending document.
        DocumentRejected => "document.rejected",
        /// A document deleted by its owner or an admin.
        DocumentDeleted => "document.deleted",

        // the layer (both services)
        /// Calls the policy refused (summarised per window).
        AccessDenied => "authz.denied",
        /// Calls over a client address's token bucket (summarised per window).
        RateLimited => "auth.rate_limited",
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn actions_are_distinct_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            let wire = action.as_str();
            assert!(seen.insert(wire), "{wire} twice");
            let (noun, verb) = wire.split_once('.').unwrap_or_default();
            assert!(!noun.is_empty() && !verb.is_empty(), "{wire}");
            assert!(
                wire.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'),
                "{wire}"
            );
        }
    }
}
