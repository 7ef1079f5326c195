//! PostgreSQL's change feed: every replica LISTENs on one channel; mutations NOTIFY in their
//! transaction with the key digest or account id they touched. When the listening connection
//! drops, the feed reports `Down` (the cache then trusts nothing for long) and reconnects with a
//! backoff capped at one second; notifications sent meanwhile are lost, so on reconnecting it
//! reports `Lost` and the cache re-reads everything.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::ids::AccountId;
use crate::key::KeyDigest;
use crate::model::Change;

/// The NOTIFY channel.
pub(crate) const CHANNEL: &str = "keyward_changes";

const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Capped low: while the feed is down, the cache re-reads keys every second.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Most keys one `KeysAdded` notification names: 8 bytes each, base64 (≈ 10.7 characters),
/// well within PostgreSQL's 8,000-byte payload.
pub(crate) const SHORTS_PER_NOTIFICATION: usize = 700;

/// The NOTIFY payload of a change: `<origin> k:<hex digest>`, `<origin> a:<account id>` or
/// `<origin> n:<base64url of the 8-byte digest starts>`.
pub(crate) fn payload(change: &Change, origin: &str) -> String {
    match change {
        Change::Key(digest) => format!("{origin} k:{}", digest.to_hex()),
        Change::KeysAdded(shorts) => {
            let bytes: Vec<u8> = shorts.iter().flat_map(|s| s.to_le_bytes()).collect();
            format!("{origin} n:{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        Change::Account(id) => format!("{origin} a:{id}"),
        Change::Lost => format!("{origin} lost"),
        Change::Down => format!("{origin} down"),
    }
}

/// The change a payload reports, unless it came from `own` origin (or is malformed).
fn parse(payload: &str, own: &str) -> Option<Option<Change>> {
    let (origin, change) = payload.split_once(' ')?;
    if origin == own {
        return Some(None);
    }
    parse_change(change).map(Some)
}

fn parse_change(payload: &str) -> Option<Change> {
    if let Some(hex) = payload.strip_prefix("k:") {
        return KeyDigest::from_hex(hex).map(Change::Key);
    }
    if let Some(text) = payload.strip_prefix("n:") {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let shorts = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        return Some(Change::KeysAdded(shorts));
    }
    payload
        .strip_prefix("a:")
        .map(|id| Change::Account(AccountId::trusted(id.to_owned())))
}

/// Starts listening; the task ends when the receiver is dropped.
pub(crate) fn spawn(pool: PgPool, origin: String) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(pool, origin, tx));
    rx
}

async fn run(pool: PgPool, origin: String, tx: mpsc::Sender<Change>) {
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    let mut reported_down = false;
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                if !first {
                    tracing::info!("change listener reconnected");
                }
                first = false;
                reported_down = false;
                backoff = MIN_BACKOFF;
                // Whatever was sent while we were not listening is lost.
                if tx.send(Change::Lost).await.is_err() {
                    return;
                }
                loop {
                    let received = tokio::select! {
                        () = tx.closed() => return,
                        received = listener.try_recv() => received,
                    };
                    match received {
                        Ok(Some(notification)) => match parse(notification.payload(), &origin) {
                            Some(Some(change)) => {
                                if tx.send(change).await.is_err() {
                                    return;
                                }
                            }
                            Some(None) => {} // our own change, already applied
                            None => tracing::warn!("ignoring a malformed change notification"),
                        },
                        Ok(None) => {
                            tracing::warn!("change listener connection lost");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "change listener failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen for changes");
            }
        }
        if !reported_down {
            reported_down = true;
            if tx.send(Change::Down).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = next_backoff(backoff);
    }
}

/// The wait before the next reconnection attempt: doubling, at most [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_is_capped_near_a_second() {
        let mut backoff = MIN_BACKOFF;
        for _ in 0..50 {
            backoff = next_backoff(backoff);
        }
        assert_eq!(backoff, Duration::from_secs(1));
    }

    #[test]
    fn payloads_round_trip() {
        let digest = KeyDigest::of("kw_live_x");
        let many: Vec<u64> = (0..SHORTS_PER_NOTIFICATION as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for change in [
            Change::Key(digest),
            Change::Account(AccountId::parse("acme:eu@1").unwrap()),
            Change::KeysAdded(vec![crate::known::short(&digest)]),
            Change::KeysAdded(many.clone()),
        ] {
            assert_eq!(
                parse(&payload(&change, "origin_a"), "origin_b"),
                Some(Some(change.clone()))
            );
            assert_eq!(
                parse(&payload(&change, "origin_a"), "origin_a"),
                Some(None),
                "own change"
            );
        }
        // A full notification fits PostgreSQL's payload limit (8,000 bytes) with a long origin.
        let full = payload(&Change::KeysAdded(many), &"o".repeat(64));
        assert!(full.len() < 8000, "{}", full.len());
        assert_eq!(parse("o n:AAAA", "x"), None, "not whole 8-byte starts");
        assert_eq!(parse("o k:zz", "x"), None);
        assert_eq!(parse("nonsense", "x"), None);
    }
}
