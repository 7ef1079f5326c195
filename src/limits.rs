//! Every bound keyward puts on what a client sends, once: the transports (gRPC, forward auth,
//! the JSON API, Envoy's `Check`) and the domain check input against these, so a limit is the
//! same whichever face a request comes through. `docs/keys.md` ("Input limits") lists them
//! for users.

/// Largest Verify request accepted: a key, up to [`MAX_SCOPES`] scope names, and a request
/// context whose path and referrer are bounded by [`MAX_PATH_LEN`] each.
pub const MAX_VERIFY_REQUEST: usize = 16 * 1024;

/// Largest ManageService request accepted: a key's restrictions (4 lists of at most 100
/// entries) and metadata (32 entries of at most 512 bytes) fit several times over.
pub const MAX_MANAGE_REQUEST: usize = 256 * 1024;

/// Largest ext_authz `Check` request accepted: Envoy sends every request header (its own
/// default bound is 60 KiB of headers) besides the path and addresses.
pub const MAX_CHECK_REQUEST: usize = 128 * 1024;

/// Largest JSON API request body.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Most request headers read from each of Envoy's two header lists; past this a `Check` is
/// refused instead of the list growing with the body (Envoy's own default limit is 100).
pub const MAX_CHECK_HEADERS: usize = 1024;

/// Most scopes a request may name (required or granted).
pub const MAX_SCOPES: usize = 200;

/// Longest HTTP method (a request's, or a restriction's).
pub const MAX_METHOD_LEN: usize = 20;

/// Longest client address given as text (`address` or `address:port`).
pub const MAX_CLIENT_IP_LEN: usize = 64;

/// Longest request path or referrer.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest `X-Forwarded-For`, all its lines together; a longer one is refused.
pub const MAX_FORWARDED_LEN: usize = 4096;

/// Most `X-Forwarded-For` hops walked.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Most metadata entries on a key.
pub const MAX_META_ENTRIES: usize = 32;

/// Longest metadata key, in bytes.
pub const MAX_META_KEY_LEN: usize = 64;

/// Longest metadata value, in bytes.
pub const MAX_META_VALUE_LEN: usize = 512;

/// Most entries in each of a key's restriction lists.
pub const MAX_RESTRICTION_ENTRIES: usize = 100;

/// Most paths in an update mask.
pub const MAX_MASK_PATHS: usize = 16;

/// Most items on one page of a list (a larger page size is clamped to it).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Most bytes of recorded changes on one page of audit events: a page ends early rather than
/// exceed it (an import's event names up to 1000 keys), always holding at least one event.
pub const MAX_AUDIT_PAGE_BYTES: usize = 1 << 20;

/// Items on a page when the caller names no page size.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Most records one ImportKeys call takes.
pub const MAX_IMPORT: usize = 1000;

/// Longest prefix of an imported key, in characters.
pub const MAX_IMPORT_PREFIX_CHARS: usize = 32;

/// Most strings one ReportLeakedKeys call takes.
pub const MAX_LEAK_REPORTS: usize = 100;

/// Longest string reported as leaked, and longest description of where it was found.
pub const MAX_LEAK_LEN: usize = 512;
