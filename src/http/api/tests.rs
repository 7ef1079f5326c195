use super::*;

#[test]
fn field_names_read_as_the_json_spells_them() {
    assert_eq!(camel("rate_limit.window"), "rateLimit.window");
    assert_eq!(
        camel("restrictions.allowed_cidrs[2]"),
        "restrictions.allowedCidrs[2]"
    );
    assert_eq!(camel("ttl"), "expiresIn");
    assert_eq!(camel("meta[\"my_key\"]"), "meta[\"my_key\"]");
    assert_eq!(camel("account_id"), "accountId");
}

#[test]
fn every_route_is_in_the_document() {
    let (_, doc) = routes();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    for path in [
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/api-keys/{id}/rotate",
        "/v1/scopes",
        "/v1/usage",
    ] {
        assert!(paths.iter().any(|p| *p == path), "{path} in {paths:?}");
    }
}
