//! The one domain error type. Client mistakes carry the offending field; store and internal
//! failures carry their cause for the log and are answered generically (see `grpc::status`).

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's name as the API spells it, e.g. `scopes[2]`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Everything that can go wrong in the domain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid argument: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the system is not in a state to do it.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A quota (the active-key limit) is used up: `FAILED_PRECONDITION` with `QuotaFailure`.
    #[error("limit reached: {message}")]
    LimitReached {
        /// What the quota belongs to, e.g. `accounts/acme`.
        subject: String,
        /// Why, for people.
        message: String,
    },
    /// No or bad credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials that do not allow this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Part of the API whose behaviour is not built yet.
    #[error("not implemented: {0}")]
    Unimplemented(String),
    /// A dependency (the database) is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A unique value is already taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Anything else: logged where it is answered ([`Error::log_internal`]), never sent to a
    /// client.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// What failed underneath, when something did.
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The stable name of the error's kind, as clients may match on it: the gRPC
    /// `ErrorInfo.reason` and the HTTP API's `code`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound(_) => "NOT_FOUND",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::LimitReached { .. } => "ACTIVE_KEY_LIMIT",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::Unimplemented(_) => "UNIMPLEMENTED",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::Internal { .. } => "INTERNAL",
        }
    }

    /// The message a client is shown: internal causes are logged here and replaced.
    pub fn client_message(&self) -> String {
        match self {
            Error::InvalidArgument(violations) => violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; "),
            Error::NotFound(what) => format!("{what} not found"),
            Error::AlreadyExists(what) => format!("{what} already exists"),
            Error::FailedPrecondition(why)
            | Error::Unauthenticated(why)
            | Error::PermissionDenied(why)
            | Error::Unimplemented(why)
            | Error::Unavailable(why) => why.clone(),
            Error::LimitReached { message, .. } => message.clone(),
            Error::Internal { .. } => "internal error; the server log has the details".to_owned(),
        }
    }

    /// An internal failure with nothing underneath it.
    pub fn internal(context: impl Into<String>) -> Self {
        Error::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// An internal failure caused by `source`, which is kept for the log.
    pub fn internal_caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Internal {
            context: context.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// Logs an internal error with its causes; called once, where the error is answered.
    pub fn log_internal(&self) {
        if let Error::Internal { context, source } = self {
            match source {
                Some(source) => tracing::error!(%context, cause = %source, "internal error"),
                None => tracing::error!(%context, "internal error"),
            }
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }
}

/// The domain's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most characters of client input quoted back in an error message.
const ECHO_LIMIT: usize = 48;

/// Whether `text` contains something shaped like an API key (`…_live_…` or `…_test_…`).
pub fn looks_like_key(text: &str) -> bool {
    text.contains("_live_") || text.contains("_test_")
}

/// `text` with every word shaped like a key replaced (a word: a run of letters, digits, `_`
/// and `%`, so `kw%5Flive%5F…` is caught as well as `kw_live_…`), for messages and log lines
/// that quote client input in full: a rejected query string, a request path.
pub fn redact_keys(text: &str) -> std::borrow::Cow<'_, str> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '%';
    let keyish = |word: &str| {
        let decoded = word.replace("%5F", "_").replace("%5f", "_");
        looks_like_key(&decoded)
    };
    if !text.split(|c| !is_word(c)).any(keyish) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_word(c) {
            word.push(c);
            continue;
        }
        out.push_str(if keyish(&word) { "<redacted>" } else { &word });
        word.clear();
        out.push(c);
    }
    out.pop();
    std::borrow::Cow::Owned(out)
}

/// Client input made safe to quote in an error: anything shaped like a key (`…_live_…` or
/// `…_test_…`) is replaced, and long input is cut to its first characters, so an error can
/// neither leak a pasted key nor be inflated by the request it answers.
pub fn echo(text: &str) -> String {
    if looks_like_key(text) {
        return "<redacted: looks like an API key>".to_owned();
    }
    let mut cut: String = text.chars().take(ECHO_LIMIT).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keys_replaces_every_key_shaped_word() {
        let key = "kw_live_abcdefghijklmnopqrstuvwxyz0123456789AB";
        let text = format!("unknown field `{key}`, expected `x` (/v1/api-keys/{key})");
        let redacted = redact_keys(&text);
        assert!(!redacted.contains("abcdef"), "{redacted}");
        assert_eq!(redacted.matches("<redacted>").count(), 2, "{redacted}");
        assert!(redacted.starts_with("unknown field `<redacted>`, expected `x`"));
        let encoded = redact_keys("kw%5Flive%5Fabcdefghij=1");
        assert!(!encoded.contains("abcdef"), "{encoded}");
        assert_eq!(redact_keys("/v1/api-keys/key_abc"), "/v1/api-keys/key_abc");
    }

    #[test]
    fn echo_redacts_keys_and_truncates() {
        assert_eq!(echo("videos:*"), "\"videos:*\"");
        assert!(!echo("kw_live_abcdefghijklmnopqrstuvwxyz0123456789AB").contains("abcdef"));
        assert!(!echo("xx_test_secret").contains("secret"));
        let long = "a".repeat(1_000_000);
        assert!(echo(&long).len() < 60);
        assert!(echo(&long).ends_with("…\""));
    }
}
