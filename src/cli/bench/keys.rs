//! The keys a run verifies: made (or imported) before the run, revoked after it.

use super::*;

/// Keys per bench account.
pub(super) const KEYS_PER_ACCOUNT: usize = 500;

/// Records per ImportKeys call (the most the server takes).
pub(super) const IMPORT_BATCH: usize = 1000;

/// The keys a run made: their secrets, ids and accounts.
pub(super) struct RunKeys {
    pub(super) secrets: Vec<String>,
    pub(super) ids: Vec<String>,
    pub(super) accounts: Vec<String>,
}

/// Makes `n` keys in fresh accounts (`{prefix}_{i}`) with no practical rate limit: generated
/// here in the server's format and imported by their hashes, 1000 a call, a few calls in
/// flight, with a progress bar (a million keys take minutes, not hours, this way).
pub(super) async fn create_keys(
    channels: &[Channel],
    root: &str,
    prefix: &str,
    format: &KeyFormat,
    n: usize,
    limit: Option<(u32, Duration)>,
) -> Result<RunKeys, String> {
    let (limit, window) = limit.unwrap_or((u32::MAX, Duration::from_secs(1)));
    let progress = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "creating keys {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut secrets = Vec::with_capacity(n);
    let mut batches = Vec::new();
    for start in (0..n).step_by(IMPORT_BATCH) {
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        for i in start..(start + IMPORT_BATCH).min(n) {
            let generated = format.generate(Environment::Live);
            batch.push(proto::ImportedKey {
                sha256: generated.digest.to_hex(),
                prefix: generated.display_prefix.clone(),
                account_id: format!("{prefix}_{}", i / KEYS_PER_ACCOUNT),
                name: format!("bench {i}"),
                environment: proto::Environment::Live.into(),
                scopes: vec!["videos:read".into()],
                rate_limit: Some(proto::RateLimit {
                    limit,
                    window: Some(prost_types::Duration {
                        seconds: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                }),
                ..Default::default()
            });
            secrets.push(generated.secret.expose().to_owned());
        }
        batches.push(batch);
    }
    // Up to 4 calls in flight, in order.
    let mut ids = Vec::with_capacity(n);
    let mut in_flight = std::collections::VecDeque::new();
    let mut batches = batches.into_iter().enumerate();
    loop {
        while in_flight.len() < 4 {
            let Some((i, keys)) = batches.next() else {
                break;
            };
            let mut manage = ManageServiceClient::new(channels[i % channels.len()].clone());
            let request = authed(root, proto::ImportKeysRequest { keys });
            in_flight.push_back(tokio::spawn(
                async move { manage.import_keys(request).await },
            ));
        }
        let Some(call) = in_flight.pop_front() else {
            break;
        };
        let answer = call
            .await
            .map_err(|e| format!("an import task failed: {e}"))?
            .map_err(|e| format!("cannot create bench keys: {}", e.message()))?
            .into_inner();
        for result in answer.results {
            if result.outcome != i32::from(proto::ImportOutcome::Imported) {
                return Err(format!("a bench key was refused: {}", result.error));
            }
            ids.push(result.key_id);
        }
        progress.set_position(ids.len() as u64);
    }
    progress.finish_and_clear();
    let accounts = (0..n.div_ceil(KEYS_PER_ACCOUNT))
        .map(|a| format!("{prefix}_{a}"))
        .collect();
    Ok(RunKeys {
        secrets,
        ids,
        accounts,
    })
}

/// Revokes every key of the run, an account at a time; says what it did.
pub(super) async fn revoke_keys(channel: Channel, root: &str, keys: &RunKeys) -> String {
    let mut manage = ManageServiceClient::new(channel);
    let mut revoked = 0;
    let mut failed = 0;
    for account in &keys.accounts {
        let request = authed(
            root,
            proto::RevokeAccountKeysRequest {
                account_id: account.clone(),
            },
        );
        match manage.revoke_account_keys(request).await {
            Ok(answer) => revoked += answer.into_inner().api_keys.len(),
            Err(_) => failed += 1,
        }
    }
    let first = keys
        .accounts
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let mut said = format!(
        "cleanup: revoked the {revoked} keys of the run (accounts {}…, {} of them)",
        first.trim_end_matches(|c: char| c.is_ascii_digit()),
        keys.accounts.len()
    );
    if failed > 0 {
        said += &format!("; {failed} accounts could not be offboarded: revoke their keys by hand");
    }
    said + "\n"
}

/// Verifies every key once, from every connection at once, so the run starts on a warm cache.
pub(super) async fn warm(channels: &[Channel], secrets: &Arc<Vec<String>>, concurrency: usize) {
    let workers = channels.len() * concurrency.max(1);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut verifier = VerifyServiceClient::new(channels[w % channels.len()].clone());
        let (secrets, next) = (secrets.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(secret) = secrets.get(i) else { break };
                let _ = verifier
                    .verify(proto::VerifyRequest {
                        key: secret.clone(),
                        ..Default::default()
                    })
                    .await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}
