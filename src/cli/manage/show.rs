//! How keys and times are printed: tables for people, JSON for scripts.

use super::*;

/// A proto enum value as a stable lower-case label: `LEAK_OUTCOME_REVOKED_NOW` → `revoked_now`
/// (the enum's name prefix dropped), `unknown` for a value this binary does not know.
pub(super) fn label<E>(name: Result<&str, E>) -> String {
    let Ok(name) = name else {
        return "unknown".into();
    };
    let known = ["LEAK_OUTCOME_", "AUDIT_ACTION_", "IMPORT_OUTCOME_"];
    let bare = known
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    bare.to_lowercase()
}

pub(super) fn show_key(output: Output, key: &proto::ApiKey) {
    match output {
        Output::Json => println!("{}", json!({ "api_key": key_json(key) })),
        Output::Table => {
            let now = now_secs();
            let mut table = table_of(&["FIELD", "VALUE"]);
            let rows: Vec<(&str, String)> = vec![
                ("prefix", key.prefix.clone()),
                ("id", key.id.clone()),
                ("name", key.name.clone()),
                ("account", key.account_id.clone()),
                ("environment", environment(key.environment).to_owned()),
                ("scopes", scopes_text(key)),
                ("created", relative(key.created_at.as_ref(), now, "-")),
                ("expires", relative(key.expires_at.as_ref(), now, "never")),
                (
                    "last used",
                    relative(key.last_used_at.as_ref(), now, "never"),
                ),
                ("status", status(key, now).to_owned()),
            ];
            for (field, value) in rows {
                table.add_row(vec![field.to_owned(), value]);
            }
            println!("{table}");
        }
    }
}

pub(super) fn table(header: &[&str]) -> Table {
    table_of(header)
}

pub(super) fn table_of(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.to_vec());
    table
}

pub(super) fn environment(e: i32) -> &'static str {
    match Environment::try_from(e) {
        Ok(Environment::Live) => "live",
        Ok(Environment::Test) => "test",
        _ => "-",
    }
}

pub(super) fn scopes_text(key: &proto::ApiKey) -> String {
    if key.grant_all {
        "all".into()
    } else {
        key.scopes.join(", ")
    }
}

pub(super) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn status(key: &proto::ApiKey, now: i64) -> &'static str {
    if key.revoked {
        "revoked"
    } else if key.expires_at.as_ref().is_some_and(|t| t.seconds <= now) {
        "expired"
    } else {
        "active"
    }
}

/// "3 days ago", "in 2 months", "just now"; `missing` when there is no time.
pub fn relative(at: Option<&Timestamp>, now: i64, missing: &str) -> String {
    let Some(at) = at else {
        return missing.to_owned();
    };
    let delta = at.seconds - now;
    let secs = delta.unsigned_abs();
    if secs < 60 {
        return "just now".into();
    }
    let (n, unit) = match secs {
        s if s < 3_600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3_600, "hour"),
        s if s < 30 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta < 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

pub(super) fn rfc3339(t: &Timestamp) -> String {
    t.to_string()
}

/// A key as JSON: stable snake_case names, times in RFC 3339, absent times as null.
pub(super) fn key_json(key: &proto::ApiKey) -> Value {
    let restrictions = key.restrictions.clone().unwrap_or_default();
    json!({
        "id": key.id,
        "account_id": key.account_id,
        "name": key.name,
        "prefix": key.prefix,
        "environment": environment(key.environment),
        "scopes": key.scopes,
        "grant_all": key.grant_all,
        "restrictions": {
            "allowed_cidrs": restrictions.allowed_cidrs,
            "allowed_referrers": restrictions.allowed_referrers,
            "allowed_paths": restrictions.allowed_paths,
            "allowed_methods": restrictions.allowed_methods,
        },
        "rate_limit": key.rate_limit.as_ref().map(|r| json!({
            "limit": r.limit,
            "window_seconds": r.window.as_ref().map(|w| w.seconds),
        })),
        "credits": key.credits.as_ref().map(|c| json!({
            "remaining": c.remaining,
            "refill": c.refill.as_ref().map(|r| json!({
                "amount": r.amount,
                "interval": match proto::RefillInterval::try_from(r.interval) {
                    Ok(proto::RefillInterval::Daily) => "daily",
                    Ok(proto::RefillInterval::Monthly) => "monthly",
                    _ => "unspecified",
                },
                "day_of_month": (r.day_of_month != 0).then_some(r.day_of_month),
            })),
        })),
        "meta": key.meta.iter().collect::<BTreeMap<_, _>>(),
        "created_at": key.created_at.as_ref().map(rfc3339),
        "updated_at": key.updated_at.as_ref().map(rfc3339),
        "expires_at": key.expires_at.as_ref().map(rfc3339),
        "last_used_at": key.last_used_at.as_ref().map(rfc3339),
        "revoked": key.revoked,
        "revoked_at": key.revoked_at.as_ref().map(rfc3339),
        // proto3 writes an absent id as ""; JSON says absent as null.
        "previous_key_id": (!key.previous_key_id.is_empty()).then_some(&key.previous_key_id),
        "created_by": (!key.created_by.is_empty()).then_some(&key.created_by),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_like_a_person_says_them() {
        let at = |s: i64| Timestamp {
            seconds: s,
            nanos: 0,
        };
        let now = 1_000_000_000;
        assert_eq!(relative(None, now, "never"), "never");
        assert_eq!(relative(Some(&at(now - 10)), now, "-"), "just now");
        assert_eq!(
            relative(Some(&at(now - 3 * 86_400)), now, "-"),
            "3 days ago"
        );
        assert_eq!(relative(Some(&at(now - 3_600)), now, "-"), "1 hour ago");
        assert_eq!(
            relative(Some(&at(now + 90 * 86_400)), now, "-"),
            "in 3 months"
        );
    }
}
