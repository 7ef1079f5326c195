//! `keyward keys report-leaked`: strings found in public, from a file.

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
