//! `keyward accounts …`, `keyward scopes` and `keyward audit`.

use super::*;

/// `keyward accounts …`.
pub async fn accounts(command: AccountsCommand) -> Result<(), Failure> {
    let (account, client) = match &command {
        AccountsCommand::Get { account, client }
        | AccountsCommand::Offboard { account, client }
        | AccountsCommand::Update {
            account, client, ..
        } => (account.clone(), client.clone()),
    };
    let mut c = Client::connect(&client).await?;
    let answer = match command {
        AccountsCommand::Offboard { .. } => {
            let keys = c
                .manage
                .revoke_account_keys(c.long_request(proto::RevokeAccountKeysRequest {
                    account_id: account.clone(),
                }))
                .await?
                .into_inner()
                .api_keys;
            match c.output {
                Output::Json => println!(
                    "{}",
                    json!({ "api_keys": keys.iter().map(key_json).collect::<Vec<_>>() })
                ),
                Output::Table => {
                    println!("revoked {} key(s) of {account}", keys.len());
                    for key in &keys {
                        println!("  {}  {}", key.prefix, key.name);
                    }
                }
            }
            return Ok(());
        }
        AccountsCommand::Get { .. } => {
            c.manage
                .get_account(c.request(proto::GetAccountRequest {
                    account_id: account,
                }))
                .await?
                .into_inner()
                .account
        }
        AccountsCommand::Update {
            max_active_keys,
            disabled,
            rate_limit,
            ..
        } => {
            let mut paths = Vec::new();
            if max_active_keys.is_some() {
                paths.push("max_active_keys".to_owned());
            }
            if disabled.is_some() {
                paths.push("disabled".to_owned());
            }
            if rate_limit.is_some() {
                paths.push("rate_limit".to_owned());
            }
            if paths.is_empty() {
                return Err(Failure::Usage(
                    "nothing to change: give --max-active-keys, --disabled or --rate-limit".into(),
                ));
            }
            c.manage
                .update_account(c.request(proto::UpdateAccountRequest {
                    account_id: account,
                    max_active_keys: max_active_keys.unwrap_or(0),
                    disabled: disabled.unwrap_or(false),
                    update_mask: Some(FieldMask { paths }),
                    rate_limit: rate_limit.and_then(|limit| limit.0),
                }))
                .await?
                .into_inner()
                .account
        }
    };
    let account = answer.unwrap_or_default();
    let doc = json!({
        "account_id": account.account_id,
        "max_active_keys": account.max_active_keys,
        "disabled": account.disabled,
        "active_keys": account.active_keys,
        "rate_limit": account.rate_limit.as_ref().map(|r| json!({
            "limit": r.limit,
            "window_secs": r.window.as_ref().map_or(0, |w| w.seconds),
        })),
    });
    match c.output {
        Output::Json => println!("{doc}"),
        Output::Table => {
            let mut table = table(&["ACCOUNT", "ACTIVE KEYS", "MAX ACTIVE KEYS", "STATUS"]);
            table.add_row(vec![
                account.account_id.clone(),
                account.active_keys.to_string(),
                account.max_active_keys.to_string(),
                if account.disabled {
                    "disabled"
                } else {
                    "enabled"
                }
                .to_owned(),
            ]);
            println!("{table}");
        }
    }
    Ok(())
}

/// `keyward scopes`: the catalog, with risk, and the presets.
pub async fn scopes(client: ClientArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&client).await?;
    let answer = c
        .manage
        .list_scopes(c.request(proto::ListScopesRequest {}))
        .await?
        .into_inner();
    let risk = |r: i32| match proto::ScopeRisk::try_from(r) {
        Ok(proto::ScopeRisk::Low) => "low",
        Ok(proto::ScopeRisk::Medium) => "medium",
        Ok(proto::ScopeRisk::High) => "high",
        _ => "-",
    };
    match c.output {
        Output::Json => println!(
            "{}",
            json!({
                "scopes": answer.scopes.iter().map(|s| json!({
                    "name": s.name, "description": s.description, "risk": risk(s.risk),
                })).collect::<Vec<_>>(),
                "presets": answer.presets.iter().map(|p| json!({
                    "name": p.name, "description": p.description, "scopes": p.scopes,
                    "grant_all": p.grant_all,
                })).collect::<Vec<_>>(),
            })
        ),
        Output::Table => {
            let mut table = table(&["SCOPE", "RISK", "DESCRIPTION"]);
            for s in &answer.scopes {
                table.add_row(vec![
                    s.name.clone(),
                    risk(s.risk).to_owned(),
                    s.description.clone(),
                ]);
            }
            println!("{table}\n");
            let mut presets = table_of(&["PRESET", "SCOPES", "DESCRIPTION"]);
            for p in &answer.presets {
                let scopes = if p.grant_all {
                    "all".to_owned()
                } else {
                    p.scopes.join(", ")
                };
                presets.add_row(vec![p.name.clone(), scopes, p.description.clone()]);
            }
            println!("{presets}");
        }
    }
    Ok(())
}

/// `keyward audit`: the management audit log, newest first.
pub async fn audit(account: Option<String>, client: ClientArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&client).await?;
    let answer = c
        .manage
        .list_audit_events(c.request(proto::ListAuditEventsRequest {
            account_id: account.unwrap_or_default(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await?
        .into_inner();
    let action = |a: i32| label(proto::AuditAction::try_from(a).map(|a| a.as_str_name()));
    match c.output {
        Output::Json => println!(
            "{}",
            json!({ "events": answer.events.iter().map(|e| json!({
                "id": e.id,
                "time": e.time.as_ref().map(rfc3339),
                "actor_key_id": e.actor_key_id,
                "account_id": e.account_id,
                "action": action(e.action),
                "target_key_id": e.target_key_id,
                "changes": e.changes.iter().map(|f| json!({
                    "field": f.field, "old_value": f.old_value, "new_value": f.new_value,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>() })
        ),
        Output::Table => {
            let now = now_secs();
            let mut table = table(&["WHEN", "ACTION", "ACCOUNT", "TARGET", "BY", "CHANGES"]);
            for e in &answer.events {
                let changes: Vec<&str> = e.changes.iter().map(|f| f.field.as_str()).collect();
                table.add_row(vec![
                    relative(e.time.as_ref(), now, "-"),
                    action(e.action),
                    e.account_id.clone(),
                    e.target_key_id.clone(),
                    e.actor_key_id.clone(),
                    changes.join(", "),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}
