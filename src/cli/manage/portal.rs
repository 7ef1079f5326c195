//! `keyward portal create|list|revoke`: portal sessions from a shell (docs/portal.md). `create`
//! prints the one-time link on stdout, alone, so `$(…)` captures it.

use super::*;

/// `keyward portal …`.
#[derive(Debug, Subcommand)]
pub enum PortalCommand {
    /// A one-time link to the key page for one account's customer (works once, 5 minutes).
    Create {
        /// The account whose keys the customer manages.
        #[arg(long)]
        account: String,
        /// A preset the customer may choose (repeatable).
        #[arg(long = "preset")]
        presets: Vec<String>,
        /// A scope the customer may grant one by one (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Longest lifetime of a key the customer creates (`90d`).
        #[arg(long)]
        max_ttl: Option<String>,
        /// The customer may rotate keys.
        #[arg(long)]
        rotate: bool,
        /// The customer may revoke keys.
        #[arg(long)]
        revoke: bool,
        /// The customer may see usage over time.
        #[arg(long)]
        usage: bool,
        /// Where the page's "Back to …" link leads (an absolute http(s) URL).
        #[arg(long)]
        return_url: String,
        /// Whom the page greets.
        #[arg(long, default_value = "")]
        display_name: String,
        /// The product's name, shown as the page's title.
        #[arg(long, default_value = "")]
        product_name: String,
        /// Accent colour, `#rrggbb`.
        #[arg(long, default_value = "")]
        accent_color: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An account's portal sessions, newest first.
    List {
        /// The account.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a portal session at once.
    Revoke {
        /// The session, `ps_…`.
        id: String,
        /// Its account.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn session_json(s: &proto::PortalSession) -> Value {
    let p = s.permissions.clone().unwrap_or_default();
    let time = |t: &Option<Timestamp>| t.as_ref().map(rfc3339);
    json!({
        "id": s.id,
        "account_id": s.account_id,
        "display_name": s.display_name,
        "status": s.status,
        "presets": p.presets,
        "scopes": p.scopes,
        "max_ttl_seconds": p.max_ttl.map(|d| d.seconds),
        "rotate": p.rotate,
        "revoke": p.revoke,
        "usage": p.usage,
        "return_url": s.return_url,
        "created_by": s.created_by,
        "created_at": time(&s.created_at),
        "opened_at": time(&s.opened_at),
        "last_seen_at": time(&s.last_seen_at),
        "expires_at": time(&s.expires_at),
        "revoked_at": time(&s.revoked_at),
    })
}

fn sessions_table(sessions: &[proto::PortalSession]) -> String {
    let now = now_secs();
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header([
        "ID",
        "ACCOUNT",
        "FOR",
        "STATUS",
        "CREATED",
        "LAST SEEN",
        "ENDS",
    ]);
    for s in sessions {
        table.add_row([
            s.id.clone(),
            s.account_id.clone(),
            s.display_name.clone(),
            s.status.clone(),
            relative(s.created_at.as_ref(), now, "—"),
            relative(s.last_seen_at.as_ref(), now, "never"),
            relative(s.expires_at.as_ref(), now, "—"),
        ]);
    }
    table.to_string()
}

/// `keyward portal …`.
pub async fn portal(command: PortalCommand) -> Result<(), Failure> {
    match command {
        PortalCommand::Create {
            account,
            presets,
            scopes,
            max_ttl,
            rotate,
            revoke,
            usage,
            return_url,
            display_name,
            product_name,
            accent_color,
            client,
        } => {
            let max_ttl = match max_ttl.as_deref().map(keyward::duration::parse) {
                None => None,
                Some(Ok(d)) => Some(prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                Some(Err(e)) => return Err(Failure::Usage(format!("--max-ttl: {e}"))),
            };
            let mut c = Client::connect(&client).await?;
            let answer = c
                .manage
                .create_portal_session(c.request(proto::CreatePortalSessionRequest {
                    account_id: account,
                    permissions: Some(proto::PortalPermissions {
                        presets,
                        scopes,
                        max_ttl,
                        rotate,
                        revoke,
                        usage,
                    }),
                    display_name,
                    return_url,
                    branding: Some(proto::PortalBranding {
                        product_name,
                        accent_color,
                        logo_url: String::new(),
                    }),
                }))
                .await?
                .into_inner();
            let session = answer.session.unwrap_or_default();
            match c.output {
                Output::Json => println!(
                    "{}",
                    json!({ "url": answer.url, "session": session_json(&session) })
                ),
                Output::Table => {
                    eprintln!(
                        "keyward: session {} for {}; the link works once, for 5 minutes",
                        session.id, session.account_id
                    );
                    println!("{}", answer.url);
                }
            }
        }
        PortalCommand::List { account, client } => {
            let mut c = Client::connect(&client).await?;
            let sessions = c
                .manage
                .list_portal_sessions(c.request(proto::ListPortalSessionsRequest {
                    account_id: account,
                }))
                .await?
                .into_inner()
                .sessions;
            match c.output {
                Output::Json => println!(
                    "{}",
                    json!({ "portal_sessions": sessions.iter().map(session_json).collect::<Vec<_>>() })
                ),
                Output::Table => println!("{}", sessions_table(&sessions)),
            }
        }
        PortalCommand::Revoke {
            id,
            account,
            client,
        } => {
            let mut c = Client::connect(&client).await?;
            let session = c
                .manage
                .revoke_portal_session(c.request(proto::RevokePortalSessionRequest {
                    account_id: account,
                    id,
                }))
                .await?
                .into_inner()
                .session
                .unwrap_or_default();
            match c.output {
                Output::Json => println!("{}", session_json(&session)),
                Output::Table => println!("ended portal session {}", session.id),
            }
        }
    }
    Ok(())
}
