//! `keyward keys import` and `keyward keys report-leaked`: records and strings from a file.

use super::*;

pub(super) async fn report_leaked(
    source: &str,
    file: &PathBuf,
    client: &ClientArgs,
) -> Result<(), Failure> {
    let text = read_input(file)?;
    let strings: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if strings.is_empty() {
        return Err(Failure::Usage("no strings to report".into()));
    }
    let mut c = Client::connect(client).await?;
    let mut results = Vec::with_capacity(strings.len());
    // The server takes at most 100 strings a call.
    for chunk in strings.chunks(100) {
        let answer = c
            .manage
            .report_leaked_keys(c.request(proto::ReportLeakedKeysRequest {
                keys: chunk.to_vec(),
                source: source.to_owned(),
            }))
            .await?
            .into_inner();
        results.extend(answer.results);
    }
    let outcome = |o: i32| label(proto::LeakOutcome::try_from(o).map(|o| o.as_str_name()));
    match c.output {
        Output::Json => println!(
            "{}",
            json!({ "results": results.iter().enumerate().map(|(i, r)| json!({
                "line": i + 1,
                "outcome": outcome(r.outcome),
                "key_id": r.key_id,
                "account_id": r.account_id,
                "prefix": r.prefix,
            })).collect::<Vec<_>>() })
        ),
        Output::Table => {
            let mut table = table(&["LINE", "OUTCOME", "PREFIX", "ACCOUNT", "ID"]);
            for (i, r) in results.iter().enumerate() {
                table.add_row(vec![
                    (i + 1).to_string(),
                    outcome(r.outcome),
                    r.prefix.clone(),
                    r.account_id.clone(),
                    r.key_id.clone(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// The text of `file`, or of stdin for `-`.
pub(super) fn read_input(file: &PathBuf) -> Result<String, Failure> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))
    }
}

/// One line of an import file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportLine {
    sha256: String,
    prefix: String,
    account_id: String,
    name: String,
    environment: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    grant_all: bool,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    last_used_at: Option<String>,
    /// The key's own rate limit, e.g. `{"limit": 100, "window": "2m"}`.
    #[serde(default)]
    rate_limit: Option<ImportRateLimit>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportRateLimit {
    limit: u32,
    window: String,
}

impl ImportLine {
    fn into_proto(self) -> Result<proto::ImportedKey, String> {
        let time = |field: &str, t: Option<String>| {
            t.map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| format!("{field}: {e} (RFC 3339, e.g. 2025-01-31T12:00:00Z)"))
            })
            .transpose()
        };
        Ok(proto::ImportedKey {
            sha256: self.sha256,
            prefix: self.prefix,
            account_id: self.account_id,
            name: self.name,
            environment: match self.environment.as_str() {
                "live" => Environment::Live,
                "test" => Environment::Test,
                other => return Err(format!("environment: {other:?} is not live or test")),
            }
            .into(),
            scopes: self.scopes,
            preset: self.preset.unwrap_or_default(),
            grant_all: self.grant_all,
            expires_at: time("expires_at", self.expires_at)?,
            created_at: time("created_at", self.created_at)?,
            last_used_at: time("last_used_at", self.last_used_at)?,
            rate_limit: match self.rate_limit {
                None => None,
                Some(rl) => Some(proto::RateLimit {
                    limit: rl.limit,
                    window: Some(duration(&rl.window).map_err(|e| match e {
                        Failure::Failed(m) | Failure::Usage(m) => {
                            format!("rate_limit.window: {m}")
                        }
                    })?),
                }),
            },
        })
    }
}

pub(super) async fn import(
    file: &PathBuf,
    batch: usize,
    client: &ClientArgs,
) -> Result<(), Failure> {
    let text = read_input(file)?;
    let batch = batch.clamp(1, 1000);
    // (line number, record or why the line is refused here)
    let lines: Vec<(usize, Result<proto::ImportedKey, String>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let record = serde_json::from_str::<ImportLine>(l)
                .map_err(|e| e.to_string())
                .and_then(ImportLine::into_proto);
            (n + 1, record)
        })
        .collect();
    let mut c = Client::connect(client).await?;
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} keys ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut imported, mut present) = (0u64, 0u64);
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let mut outcomes: Vec<Value> = Vec::new();
    for chunk in lines.chunks(batch) {
        let mut sent = Vec::new();
        for (line, record) in chunk {
            match record {
                Ok(record) => sent.push((*line, record.clone())),
                Err(why) => rejected.push((*line, why.clone())),
            }
        }
        if !sent.is_empty() {
            let answer = c
                .manage
                .import_keys(c.request(proto::ImportKeysRequest {
                    keys: sent.iter().map(|(_, r)| r.clone()).collect(),
                }))
                .await?
                .into_inner();
            for ((line, _), result) in sent.iter().zip(&answer.results) {
                match proto::ImportOutcome::try_from(result.outcome) {
                    Ok(proto::ImportOutcome::Imported) => imported += 1,
                    Ok(proto::ImportOutcome::AlreadyPresent) => present += 1,
                    _ => rejected.push((
                        *line,
                        // The server names the record by its place in the call.
                        result
                            .error
                            .split_once('.')
                            .map_or(result.error.as_str(), |(_, e)| e)
                            .to_owned(),
                    )),
                }
                if c.output == Output::Json {
                    outcomes.push(json!({
                        "line": line,
                        "outcome": label(
                            proto::ImportOutcome::try_from(result.outcome).map(|o| o.as_str_name()),
                        ),
                        "key_id": result.key_id,
                        "error": result.error,
                    }));
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    rejected.sort();
    match c.output {
        Output::Json => println!(
            "{}",
            json!({
                "imported": imported,
                "already_present": present,
                "rejected": rejected.iter().map(|(l, e)| json!({"line": l, "error": e})).collect::<Vec<_>>(),
                "results": outcomes,
            })
        ),
        Output::Table => {
            println!(
                "imported {imported}, already present {present}, rejected {}",
                rejected.len()
            );
            for (line, why) in &rejected {
                eprintln!("line {line}: {why}");
            }
        }
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} record(s) rejected; the others were imported",
            rejected.len()
        )))
    }
}
