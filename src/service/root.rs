//! Root keys: the first one made at first start, and more minted against the store for
//! recovery. They live in the reserved root account and hold exactly the `root` scope.

use super::Keyward;
use super::auth::ROOT_ACCOUNT;
use crate::error::Result;
use crate::ids::AccountId;
use crate::key::{Environment, KeyDigest, SecretKey};
use crate::model::{ApiKey, NewKey};
use crate::scope::ROOT;
use crate::time::Timestamp;

impl Keyward {
    /// Creates the first root key if the store holds no key at all; returns its secret.
    pub async fn bootstrap_root_key(&self) -> Result<Option<SecretKey>> {
        let (secret, new) = self.root_key("root (created on first start)");
        let created = self.store.insert_first_key(&new).await?;
        if created {
            tracing::info!(key_id = %new.key.id, "created the first root key");
        }
        Ok(created.then_some(secret))
    }

    /// Mints another root key directly against the store, for recovery.
    pub async fn mint_root_key(&self, name: &str) -> Result<(SecretKey, ApiKey)> {
        let (secret, new) = self.root_key(name);
        // Root keys are not subject to the active-key limit of the root account.
        let stored = self
            .store
            .insert_key(&new, u32::MAX, new.key.created_at, None)
            .await?;
        tracing::info!(key_id = %stored.key.id, "minted a root key");
        Ok((secret, stored.key))
    }

    /// Makes sure a root key with this digest exists: the SHA-256 of a `kw_live_…` key generated
    /// elsewhere (`keyward root-key generate`, kept in a secret store), so a root key reaches
    /// the server without ever being printed or logged. Returns whether it was added now.
    pub async fn provision_root_key(&self, digest: KeyDigest) -> Result<bool> {
        if self.store.key_by_digest(&digest).await?.is_some() {
            return Ok(false);
        }
        let now = Timestamp::now();
        let new = NewKey {
            digest,
            key: ApiKey {
                scopes: vec![ROOT.to_owned()],
                ..ApiKey::issued(
                    AccountId::trusted(ROOT_ACCOUNT.to_owned()),
                    "root (provisioned by its SHA-256)",
                    // Only the hash is known; the display prefix names how the key came.
                    "provisioned",
                    Environment::Live,
                    now,
                )
            },
        };
        match self.store.insert_key(&new, u32::MAX, now, None).await {
            Ok(stored) => {
                self.cache.invalidate(&digest).await;
                tracing::info!(key_id = %stored.key.id, "provisioned a root key by its SHA-256");
                Ok(true)
            }
            // Another replica provisioned it at the same moment.
            Err(crate::error::Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn root_key(&self, name: &str) -> (SecretKey, NewKey) {
        let now = Timestamp::now();
        let generated = self.format.generate(Environment::Live);
        let new = NewKey {
            digest: generated.digest,
            key: ApiKey {
                scopes: vec![ROOT.to_owned()],
                ..ApiKey::issued(
                    AccountId::trusted(ROOT_ACCOUNT.to_owned()),
                    name,
                    generated.display_prefix,
                    Environment::Live,
                    now,
                )
            },
        };
        (generated.secret, new)
    }
}
