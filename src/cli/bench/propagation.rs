//! `keyward bench --propagation`: how long a revocation takes to reach every replica.

use super::*;

/// Measures how long a revocation made through `addr` takes to be seen by `peer`, `rounds`
/// times, polling the peer as fast as it answers.
pub async fn propagation(
    addr: &str,
    peer: &str,
    root_key: &str,
    format: &KeyFormat,
    rounds: usize,
) -> Result<String, String> {
    let origin = connect(addr).await?;
    let other = connect(peer).await?;
    let account = keyward::model::new_id("bench");
    let keys = create_keys(
        std::slice::from_ref(&origin),
        root_key,
        &account,
        format,
        rounds.max(1),
        None,
    )
    .await?;
    let (secrets, ids) = (keys.secrets, keys.ids);
    let mut manage = ManageServiceClient::new(origin);
    let mut verifier = VerifyServiceClient::new(other);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for (secret, id) in secrets.iter().zip(&ids) {
        let ask = || proto::VerifyRequest {
            key: secret.clone(),
            ..Default::default()
        };
        // The peer caches the key first, as a busy gateway would have.
        let first = verifier
            .verify(ask())
            .await
            .map_err(|e| e.message().to_owned())?;
        if first.into_inner().code != VerifyCode::Valid as i32 {
            return Err(
                "the peer does not see the new key; do the servers share a database?".into(),
            );
        }
        manage
            .revoke_key(authed(root_key, proto::RevokeKeyRequest { id: id.clone() }))
            .await
            .map_err(|e| e.message().to_owned())?;
        let revoked_at = Instant::now();
        loop {
            let r = verifier
                .verify(ask())
                .await
                .map_err(|e| e.message().to_owned())?;
            if r.into_inner().code == VerifyCode::Revoked as i32 {
                break;
            }
            if revoked_at.elapsed() > Duration::from_secs(30) {
                return Err("the peer did not see a revocation within 30 s".into());
            }
        }
        let micros = u64::try_from(revoked_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = histogram.record(micros.max(1));
    }
    let ms = |p: f64| histogram.value_at_quantile(p) as f64 / 1000.0;
    Ok(format!(
        "revocation seen by the peer, over {} revocations: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
        histogram.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    ))
}
