//! `keyward keys …`: create, list, show, update, rotate and revoke keys.

use super::*;

/// `keyward keys …`.
pub async fn keys(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Create(args) => create(args).await,
        KeysCommand::List(args) => list(args).await,
        KeysCommand::Get { id, client } => {
            let mut c = Client::connect(&client).await?;
            let key = c
                .manage
                .get_key(c.request(proto::GetKeyRequest { id }))
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            show_key(c.output, &key);
            Ok(())
        }
        KeysCommand::Update(args) => update(args).await,
        KeysCommand::Rotate { id, grace, client } => {
            let mut c = Client::connect(&client).await?;
            let grace_period = grace.as_deref().map(duration).transpose()?;
            let answer = c
                .manage
                .rotate_key(c.request(proto::RotateKeyRequest { id, grace_period }))
                .await?
                .into_inner();
            let key = answer.api_key.unwrap_or_default();
            let previous = answer.previous_api_key.unwrap_or_default();
            print_secret(
                c.output,
                &answer.key,
                &key,
                Some(&previous),
                "the new key is shown this once; store it now (the old one keeps working until its new expiry)",
            );
            Ok(())
        }
        KeysCommand::Import {
            file,
            format,
            batch,
            in_flight,
            restart,
            client,
        } => {
            let args = import::ImportArgs {
                file: &file,
                format,
                batch,
                in_flight,
                restart,
            };
            import::import(args, &client).await
        }
        KeysCommand::ReportLeaked {
            source,
            file,
            client,
        } => leaked::report_leaked(&source, &file, &client).await,
        KeysCommand::Revoke { id, client } => {
            let mut c = Client::connect(&client).await?;
            let key = c
                .manage
                .revoke_key(c.request(proto::RevokeKeyRequest { id }))
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            match c.output {
                Output::Json => println!("{}", json!({ "api_key": key_json(&key) })),
                Output::Table => println!("revoked {} ({})", key.prefix, key.name),
            }
            Ok(())
        }
    }
}

pub(super) async fn create(args: CreateArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let expiry = match args.expires_in.as_deref() {
        None => None,
        // Asked for as such: a server with a max_ttl refuses it rather than pick a lifetime.
        Some("never") => Some(proto::create_key_request::Expiry::NeverExpires(true)),
        Some(text) => Some(proto::create_key_request::Expiry::Ttl(duration(text)?)),
    };
    let restrictions = proto::Restrictions {
        allowed_cidrs: args.allowed_cidrs,
        allowed_referrers: args.allowed_referrers,
        allowed_paths: args.allowed_paths,
        allowed_methods: args.allowed_methods,
    };
    let request = proto::CreateKeyRequest {
        account_id: args.account,
        name: args.name,
        environment: match args.environment {
            Env::Live => Environment::Live,
            Env::Test => Environment::Test,
        }
        .into(),
        scopes: args.scopes,
        preset: args.preset.unwrap_or_default(),
        grant_all: args.grant_all,
        expiry,
        restrictions: Some(restrictions),
        rate_limit: None,
        meta: args.meta.into_iter().collect(),
        credits: args.credits.map(|remaining| proto::Credits {
            remaining,
            refill: args.refill,
            refilled_at: None,
        }),
    };
    let answer = c.manage.create_key(c.request(request)).await?.into_inner();
    let key = answer.api_key.unwrap_or_default();
    print_secret(
        c.output,
        &answer.key,
        &key,
        None,
        "the key is shown this once; store it now",
    );
    Ok(())
}

/// The secret on stdout (alone in table mode, so `$(keyward keys create …)` captures it), the
/// warning on stderr.
pub(super) fn print_secret(
    output: Output,
    secret: &str,
    key: &proto::ApiKey,
    previous: Option<&proto::ApiKey>,
    warning: &str,
) {
    eprintln!("keyward: {warning}");
    match output {
        Output::Json => {
            let mut doc = json!({ "key": secret, "api_key": key_json(key) });
            if let Some(previous) = previous {
                doc["previous_api_key"] = key_json(previous);
            }
            println!("{doc}");
        }
        Output::Table => println!("{secret}"),
    }
}

pub(super) async fn list(args: ListArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let unused_since = match args.unused_since.as_deref() {
        None => None,
        Some(text) => {
            let d = keyward::duration::parse(text).map_err(Failure::Usage)?;
            let at = std::time::SystemTime::now()
                .checked_sub(d)
                .ok_or_else(|| Failure::Usage(format!("--unused-since {text} is too long")))?;
            Some(Timestamp::from(at))
        }
    };
    let usage_since = match args.most_used.as_deref() {
        None => None,
        Some(text) => {
            let d = keyward::duration::parse(text).map_err(Failure::Usage)?;
            let at = std::time::SystemTime::now()
                .checked_sub(d)
                .ok_or_else(|| Failure::Usage(format!("--most-used {text} is too long")))?;
            Some(Timestamp::from(at))
        }
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut keys = Vec::new();
    let mut uses = std::collections::HashMap::new();
    let mut page_token = String::new();
    while keys.len() < limit {
        let answer = c
            .manage
            .list_keys(c.request(proto::ListKeysRequest {
                account_id: args.account.clone().unwrap_or_default(),
                include_revoked: args.include_revoked,
                unused_since,
                page_size:
                    u32::try_from(limit.saturating_sub(keys.len()).min(1_000)).unwrap_or(1_000),
                page_token: page_token.clone(),
                order_by: if usage_since.is_some() {
                    "usage desc".into()
                } else {
                    String::new()
                },
                usage_since,
            }))
            .await?
            .into_inner();
        keys.extend(answer.api_keys);
        uses.extend(answer.usage);
        if answer.next_page_token.is_empty() {
            break;
        }
        page_token = answer.next_page_token;
    }
    keys.truncate(limit);
    let most_used = usage_since.is_some();
    match c.output {
        Output::Json => {
            let mut answer = json!({ "api_keys": keys.iter().map(key_json).collect::<Vec<_>>() });
            if most_used {
                answer["uses"] = json!(
                    keys.iter()
                        .map(|k| (k.id.clone(), json!(uses.get(&k.id).copied().unwrap_or(0))))
                        .collect::<serde_json::Map<_, _>>()
                );
            }
            println!("{answer}");
        }
        Output::Table => {
            let now = now_secs();
            let mut header = vec![
                "PREFIX",
                "NAME",
                "ACCOUNT",
                "SCOPES",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "STATUS",
                "ID",
            ];
            if most_used {
                header.push("USES");
            }
            let mut table = table(&header);
            for key in &keys {
                let mut row = vec![
                    key.prefix.clone(),
                    key.name.clone(),
                    key.account_id.clone(),
                    scopes_text(key),
                    relative(key.created_at.as_ref(), now, "-"),
                    relative(key.expires_at.as_ref(), now, "never"),
                    relative(key.last_used_at.as_ref(), now, "never"),
                    status(key, now).to_owned(),
                    key.id.clone(),
                ];
                if most_used {
                    row.push(uses.get(&key.id).copied().unwrap_or(0).to_string());
                }
                table.add_row(row);
            }
            println!("{table}");
        }
    }
    Ok(())
}

pub(super) async fn update(args: UpdateArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let mut paths = Vec::new();
    let mut request = proto::UpdateKeyRequest {
        id: args.id,
        ..Default::default()
    };
    if let Some(name) = args.name {
        request.name = name;
        paths.push("name");
    }
    if !args.scopes.is_empty() {
        request.scopes = args.scopes;
        paths.push("scopes");
    }
    if let Some(text) = args.expires_in {
        if text != "never" {
            let d = keyward::duration::parse(&text).map_err(Failure::Usage)?;
            request.expires_at = Some(Timestamp::from(std::time::SystemTime::now() + d));
        }
        paths.push("expires_at");
    }
    if !args.allowed_cidrs.is_empty() {
        request.restrictions = Some(proto::Restrictions {
            allowed_cidrs: args.allowed_cidrs,
            ..Default::default()
        });
        paths.push("restrictions");
    }
    if let Some(text) = args.credits {
        request.credits = match text.as_str() {
            "unlimited" => None,
            number => Some(proto::Credits {
                remaining: number.parse().map_err(|_| {
                    Failure::Usage(format!(
                        "--credits {number:?}: give a number of units or unlimited"
                    ))
                })?,
                refill: args.refill,
                refilled_at: None,
            }),
        };
        paths.push("credits");
    }
    if let Some(delta) = args.add_credits {
        request.add_credits = delta;
        paths.push("add_credits");
    }
    if paths.is_empty() {
        return Err(Failure::Usage(
            "nothing to change: give --name, --scope, --expires-in, --allowed-cidr, --credits or --add-credits"
                .into(),
        ));
    }
    request.update_mask = Some(FieldMask {
        paths: paths.into_iter().map(String::from).collect(),
    });
    let key = c
        .manage
        .update_key(c.request(request))
        .await?
        .into_inner()
        .api_key
        .unwrap_or_default();
    show_key(c.output, &key);
    Ok(())
}
