//! Every `google.rpc.ErrorInfo` reason docverify sends, in one place: the
//! contract clients switch on, so a reason is never spelled twice.

crate::catalogue::catalogue! {
    /// An `ErrorInfo` reason (UPPER_SNAKE_CASE on the wire).
    pub enum Reason {
        // UNAUTHENTICATED
        /// No `authorization` metadata on an RPC that needs it.
        MissingToken => "MISSING_TOKEN",
        /// A malformed, forged, expired or revoked access token.
        InvalidToken => "INVALID_TOKEN",
        /// The identity layer found no caller (a handler ran unauthenticated).
        Unauthenticated => "UNAUTHENTICATED",
        /// Wrong email or password (never says which).
        InvalidCredentials => "INVALID_CREDENTIALS",
        /// An unknown, expired, revoked or reused refresh token.
        InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
        /// The account is disabled.
        UserDisabled => "USER_DISABLED",
        /// IssueServiceToken with an unknown client, a wrong or revoked
        /// secret, or a disabled service account (never says which).
        InvalidClient => "INVALID_CLIENT",

        // PERMISSION_DENIED
        /// The caller's roles do not allow this RPC or this document.
        PermissionDenied => "PERMISSION_DENIED",
        /// The RPC is not in the policy table (deny by default).
        MethodNotAllowed => "METHOD_NOT_ALLOWED",
        /// A verifier reviewing their own upload.
        SelfReview => "SELF_REVIEW",

        // NOT_FOUND, INVALID_ARGUMENT: fixed by their error variants.
        /// Missing, or not visible to this caller.
        NotFound => "NOT_FOUND",
        /// One `BadRequest` field violation per bad field.
        InvalidArgument => "INVALID_ARGUMENT",

        // ALREADY_EXISTS
        /// Registration with an email that has an account.
        EmailTaken => "EMAIL_TAKEN",
        /// A service account with this name exists.
        ServiceAccountNameTaken => "SERVICE_ACCOUNT_NAME_TAKEN",

        // FAILED_PRECONDITION
        /// A review of a document that is no longer pending.
        DocumentNotPending => "DOCUMENT_NOT_PENDING",
        /// The change would leave no enabled admin.
        LastAdminProtection => "LAST_ADMIN_PROTECTION",
        /// WatchRevocations from a cursor no longer kept (or never issued):
        /// resync from ListRevocationState.
        RevocationCursorExpired => "REVOCATION_CURSOR_EXPIRED",
        /// GetReceipt before the sequencer made the review a leaf of the
        /// audit log (it does within a second or so): retry shortly.
        ReceiptPending => "RECEIPT_PENDING",

        // ABORTED
        /// The document was deleted while it was being read.
        DocumentChanged => "DOCUMENT_CHANGED",
        /// The client reset its request stream before its end (it gave
        /// up): nothing of it is kept. Seen in the log; the client is gone.
        StreamReset => "STREAM_RESET",

        // DEADLINE_EXCEEDED
        /// The caller's deadline (or REQUEST_TIMEOUT) passed first.
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        /// A streamed response the client stopped reading.
        StreamStalled => "STREAM_STALLED",
        /// A streamed response older than STREAM_MAX_LIFETIME.
        StreamLifetimeExceeded => "STREAM_LIFETIME_EXCEEDED",

        // RESOURCE_EXHAUSTED
        /// Too many failed logins for this email: wait (RetryInfo).
        LoginThrottled => "LOGIN_THROTTLED",
        /// Too many failed logins from this client address: wait (RetryInfo).
        AddressThrottled => "ADDRESS_THROTTLED",
        /// The password hashing queue is full.
        PasswordHashingBusy => "PASSWORD_HASHING_BUSY",
        /// MAX_CONCURRENT_REQUESTS RPCs are in flight.
        Overloaded => "OVERLOADED",
        /// The streaming budget (per service or per connection) is spent.
        TooManyStreams => "TOO_MANY_STREAMS",
        /// An upload over MAX_DOCUMENT_BYTES.
        DocumentTooLarge => "DOCUMENT_TOO_LARGE",
        /// A client address over a public RPC's token bucket.
        RateLimited => "RATE_LIMITED",

        // UNAVAILABLE, INTERNAL
        /// A dependency (database, auth-service) cannot be reached.
        Unavailable => "UNAVAILABLE",
        /// A bug; the details are in the log under the request id.
        Internal => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn reasons_are_distinct_upper_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let wire = reason.as_str();
            assert!(seen.insert(wire), "{wire} twice");
            assert!(
                wire.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{wire}"
            );
        }
    }
}
