//! Page tokens: opaque, bound to the caller and the query, and valid on every replica.
//!
//! A list's cursor is a row position in the store; given out as it is, it would tell any
//! tenant how many keys the store holds, and a token made offline would be accepted. A token
//! here is a random nonce, the cursor masked with a pad derived from the nonce, and an
//! HMAC-SHA256 tag over all of it with the caller's key id and the query's fingerprint. The
//! HMAC key is a secret the replicas share through the store (`server_secrets`), so the next
//! page may be served by any replica.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::Sha256;

/// The name of the page-token secret in the store.
pub const SECRET_NAME: &str = "page_tokens";

/// Bytes of a token: nonce, masked cursor, tag.
const NONCE: usize = 8;
const CURSOR: usize = 8;
const TAG: usize = 16;
const TOKEN: usize = NONCE + CURSOR + TAG;

/// Seals and opens page tokens with the replicas' shared secret.
#[derive(Clone)]
pub struct PageTokens {
    secret: [u8; 32],
}

/// The secret is never shown.
impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(<secret>)")
    }
}

impl PageTokens {
    /// Tokens under `secret` (the store's shared one; see [`PageTokens::random_secret`]).
    pub fn new(secret: [u8; 32]) -> Self {
        PageTokens { secret }
    }

    /// A fresh secret from the OS CSPRNG: the one the first replica offers the store.
    pub fn random_secret() -> [u8; 32] {
        let mut secret = [0; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut secret)
            // The OS CSPRNG does not fail on the systems keyward runs on; if it did, nothing
            // secure could be made, so stopping is right.
            .expect("the OS random number generator works");
        secret
    }

    fn mac(&self, purpose: &[u8], parts: &[&[u8]], caller: &str, query: u32) -> Hmac<Sha256> {
        // A 32-byte key is valid for HMAC; `new_from_slice` fails only for lengths HMAC
        // cannot take, which none is.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(purpose);
        for part in parts {
            mac.update(part);
        }
        mac.update(&(caller.len() as u64).to_be_bytes());
        mac.update(caller.as_bytes());
        mac.update(&query.to_be_bytes());
        mac
    }

    fn pad(&self, nonce: &[u8], caller: &str, query: u32) -> [u8; CURSOR] {
        let pad = self
            .mac(b"pad", &[nonce], caller, query)
            .finalize()
            .into_bytes();
        let mut out = [0; CURSOR];
        out.copy_from_slice(&pad[..CURSOR]);
        out
    }

    /// The token of `cursor` for `caller` (its key id) and the query `query` (its
    /// fingerprint); `""` when there is no next page.
    pub fn seal(&self, cursor: Option<i64>, caller: &str, query: u32) -> String {
        let Some(cursor) = cursor else {
            return String::new();
        };
        let mut token = [0; TOKEN];
        let (nonce, rest) = token.split_at_mut(NONCE);
        rand::rngs::OsRng
            .try_fill_bytes(nonce)
            // As in `random_secret`.
            .expect("the OS random number generator works");
        let pad = self.pad(nonce, caller, query);
        let (masked, tag) = rest.split_at_mut(CURSOR);
        for (i, byte) in cursor.to_be_bytes().into_iter().enumerate() {
            masked[i] = byte ^ pad[i];
        }
        let full = self
            .mac(b"tag", &[nonce, masked], caller, query)
            .finalize()
            .into_bytes();
        tag.copy_from_slice(&full[..TAG]);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor of `token`, if this service issued it to `caller` for the query `query`;
    /// `Ok(None)` for the first page (an empty token).
    pub fn open(&self, token: &str, caller: &str, query: u32) -> Result<Option<i64>, String> {
        if token.is_empty() {
            return Ok(None);
        }
        let refused = || {
            "is not a page token this service issued for this caller and query; list again \
             without it"
                .to_owned()
        };
        // Bounded before decoding: a token is 43 characters.
        if token.len() > 64 {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
        let Ok(bytes) = <[u8; TOKEN]>::try_from(bytes.as_slice()) else {
            return Err(refused());
        };
        let (nonce, rest) = bytes.split_at(NONCE);
        let (masked, tag) = rest.split_at(CURSOR);
        // Compared in constant time.
        self.mac(b"tag", &[nonce, masked], caller, query)
            .verify_truncated_left(tag)
            .map_err(|_| refused())?;
        let pad = self.pad(nonce, caller, query);
        let mut cursor = [0; CURSOR];
        for i in 0..CURSOR {
            cursor[i] = masked[i] ^ pad[i];
        }
        Ok(Some(i64::from_be_bytes(cursor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_for_their_caller_and_query() {
        let tokens = PageTokens::new([7; 32]);
        let token = tokens.seal(Some(41), "key_a", 9);
        assert_eq!(tokens.open(&token, "key_a", 9), Ok(Some(41)));
        assert!(tokens.open(&token, "key_b", 9).is_err(), "another caller");
        assert!(tokens.open(&token, "key_a", 10).is_err(), "another query");
        assert!(
            PageTokens::new([8; 32]).open(&token, "key_a", 9).is_err(),
            "another secret"
        );
        assert_eq!(tokens.seal(None, "key_a", 9), "");
        assert_eq!(tokens.open("", "key_a", 9), Ok(None));
    }

    #[test]
    fn tokens_are_opaque_and_cannot_be_forged() {
        let tokens = PageTokens::new([7; 32]);
        let (one, two) = (tokens.seal(Some(1), "k", 1), tokens.seal(Some(1), "k", 1));
        assert_ne!(one, two, "a fresh nonce each time");
        assert_eq!(one.len(), 43);
        // Any one bit changed is refused.
        let bytes = URL_SAFE_NO_PAD.decode(&one).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut changed = bytes.clone();
            changed[bit / 8] ^= 1 << (bit % 8);
            assert!(
                tokens
                    .open(&URL_SAFE_NO_PAD.encode(&changed), "k", 1)
                    .is_err(),
                "{bit}"
            );
        }
        // The old form (a row number and a checksum) is not a token.
        for forged in ["p1.2", "pZZ.abc", "x", &"A".repeat(43), &"A".repeat(500)] {
            assert!(tokens.open(forged, "k", 1).is_err(), "{forged}");
        }
    }
}
