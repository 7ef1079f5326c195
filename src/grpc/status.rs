//! The one mapping from domain errors to gRPC statuses. Client mistakes name their fields as
//! `BadRequest` field violations; internal errors are logged with their cause and answered
//! with a generic message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                let message = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::FailedPrecondition(why) => Status::failed_precondition(why),
            Error::Unauthenticated(why) => Status::unauthenticated(why),
            Error::PermissionDenied(why) => Status::permission_denied(why),
            Error::Unimplemented(what) => Status::unimplemented(what),
            Error::Unavailable(why) => Status::unavailable(why),
            Error::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error; the server log has the details")
            }
        }
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
    fn internal_errors_are_not_sent() {
        let status = Status::from(Error::Internal("connection to 10.0.0.1 refused".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.1"));
    }
}
