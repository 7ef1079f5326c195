//! The one mapping from domain errors to gRPC statuses. Client mistakes name their fields as
//! `BadRequest` field violations; internal errors are logged with their cause and answered
//! with a generic message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// The `ErrorInfo.domain` of keyward's errors (AIP-193).
pub(crate) const DOMAIN: &str = "keyward.dev";

/// How long a client should wait before retrying an UNAVAILABLE answer.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl From<Error> for Status {
    /// Every error carries `google.rpc.ErrorInfo` (a stable `reason` in keyward's domain);
    /// invalid requests add `BadRequest` field violations, the active-key limit `QuotaFailure`,
    /// an unavailable store `RetryInfo` (AIP-193).
    fn from(error: Error) -> Self {
        let mut details = ErrorDetails::new();
        let (reason, message) = (error.reason(), error.client_message());
        let code = match error {
            Error::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Code::InvalidArgument
            }
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::LimitReached { subject, message } => {
                details.add_quota_failure_violation(subject, message);
                Code::FailedPrecondition
            }
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Unavailable(_) => {
                details.set_retry_info(Some(RETRY_AFTER));
                Code::Unavailable
            }
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Internal { .. } => {
                error.log_internal();
                Code::Internal
            }
        };
        details.set_error_info(reason, DOMAIN, std::collections::HashMap::new());
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(Error::invalid("scopes[1]", "bad"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .expect("bad request details")
            .field_violations;
        assert_eq!(violations[0].field, "scopes[1]");
    }

    #[test]
    fn every_error_carries_its_reason_and_the_retry_or_quota_it_needs() {
        let status = Status::from(Error::NotFound("key \"x\"".into()));
        let info = status.get_error_details();
        let info = info.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("NOT_FOUND", DOMAIN)
        );
        let status = Status::from(Error::Unavailable("down".into()));
        assert_eq!(
            status
                .get_error_details()
                .retry_info()
                .expect("RetryInfo")
                .retry_delay,
            Some(RETRY_AFTER)
        );
        let status = Status::from(Error::LimitReached {
            subject: "accounts/acme".into(),
            message: "full".into(),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "ACTIVE_KEY_LIMIT");
        let quota = details.quota_failure().expect("QuotaFailure");
        assert_eq!(quota.violations[0].subject, "accounts/acme");
    }

    #[test]
    fn internal_errors_are_not_sent() {
        let status = Status::from(Error::internal("connection to 10.0.0.1 refused"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.1"));
    }
}
