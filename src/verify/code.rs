//! The fourteen verify codes, in the order they are checked, with what each tells the gateway
//! (`http_status`) and the end client (`message`).

/// The outcome of a verification, in the order the checks are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Every check passed.
    Valid,
    /// No key was presented.
    Missing,
    /// Not the key format, or the checksum fails.
    Malformed,
    /// No such key.
    NotFound,
    /// The key was revoked.
    Revoked,
    /// The key is past its expiry.
    Expired,
    /// The key's environment is not the expected one.
    WrongEnvironment,
    /// The key's account is disabled.
    AccountDisabled,
    /// The client IP is outside the allowed CIDRs.
    IpNotAllowed,
    /// The referrer matches no allowed pattern.
    ReferrerNotAllowed,
    /// The method is not allowed.
    MethodNotAllowed,
    /// The path matches no allowed pattern.
    PathNotAllowed,
    /// A required scope is not held.
    InsufficientScope,
    /// The key's usage credits are spent.
    UsageExceeded,
    /// A rate limit is exhausted.
    RateLimited,
}

impl Code {
    /// Every code, in discriminant order (`code as usize` indexes this).
    pub const ALL: [Code; 15] = [
        Code::Valid,
        Code::Missing,
        Code::Malformed,
        Code::NotFound,
        Code::Revoked,
        Code::Expired,
        Code::WrongEnvironment,
        Code::AccountDisabled,
        Code::IpNotAllowed,
        Code::ReferrerNotAllowed,
        Code::MethodNotAllowed,
        Code::PathNotAllowed,
        Code::InsufficientScope,
        Code::UsageExceeded,
        Code::RateLimited,
    ];

    /// The code's stable number: `keyward.v1.VerifyCode`'s, and what the usage table stores.
    pub fn number(self) -> i32 {
        match self {
            Code::Valid => 1,
            Code::Missing => 2,
            Code::Malformed => 3,
            Code::NotFound => 4,
            Code::Revoked => 5,
            Code::Expired => 6,
            Code::WrongEnvironment => 7,
            Code::AccountDisabled => 8,
            Code::IpNotAllowed => 9,
            Code::ReferrerNotAllowed => 10,
            Code::MethodNotAllowed => 11,
            Code::PathNotAllowed => 12,
            Code::InsufficientScope => 13,
            Code::RateLimited => 14,
            Code::UsageExceeded => 15,
        }
    }

    /// The code with stable number `n`, if any.
    pub fn from_number(n: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.number() == n)
    }

    /// The code named `name` (`VALID`, `RATE_LIMITED`, …), if any.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// What the gateway should answer.
    pub fn http_status(self) -> u32 {
        match self {
            Code::Valid => 200,
            Code::Missing
            | Code::Malformed
            | Code::NotFound
            | Code::Revoked
            | Code::Expired
            | Code::WrongEnvironment => 401,
            Code::AccountDisabled
            | Code::IpNotAllowed
            | Code::ReferrerNotAllowed
            | Code::MethodNotAllowed
            | Code::PathNotAllowed
            | Code::InsufficientScope => 403,
            Code::UsageExceeded | Code::RateLimited => 429,
        }
    }

    /// A reason safe to show the end client.
    pub fn message(self) -> &'static str {
        match self {
            Code::Valid => "the key is valid",
            Code::Missing => "no API key was given",
            Code::Malformed => "the API key is malformed",
            Code::NotFound => "the API key does not exist",
            Code::Revoked => "the API key has been revoked",
            Code::Expired => "the API key has expired",
            Code::WrongEnvironment => "the API key belongs to another environment",
            Code::AccountDisabled => "the API key's account is disabled",
            Code::IpNotAllowed => "the client IP is not allowed for this API key",
            Code::ReferrerNotAllowed => "the referrer is not allowed for this API key",
            Code::MethodNotAllowed => "the HTTP method is not allowed for this API key",
            Code::PathNotAllowed => "the path is not allowed for this API key",
            Code::InsufficientScope => "the API key lacks a required scope",
            Code::UsageExceeded => "the API key's usage credits are spent",
            Code::RateLimited => "the API key's rate limit is exhausted",
        }
    }

    /// The code's name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::Missing => "MISSING",
            Code::Malformed => "MALFORMED",
            Code::NotFound => "NOT_FOUND",
            Code::Revoked => "REVOKED",
            Code::Expired => "EXPIRED",
            Code::WrongEnvironment => "WRONG_ENVIRONMENT",
            Code::AccountDisabled => "ACCOUNT_DISABLED",
            Code::IpNotAllowed => "IP_NOT_ALLOWED",
            Code::ReferrerNotAllowed => "REFERRER_NOT_ALLOWED",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PathNotAllowed => "PATH_NOT_ALLOWED",
            Code::InsufficientScope => "INSUFFICIENT_SCOPE",
            Code::UsageExceeded => "USAGE_EXCEEDED",
            Code::RateLimited => "RATE_LIMITED",
        }
    }
}
