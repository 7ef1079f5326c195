//! Account policy (active-key limit, disabled), the audit trail and the scope catalog as
//! management sees them.

use super::Keyward;
use super::auth::{Access, Caller};
use crate::audit::{AuditEvent, AuditQuery};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::model::{Account, AccountPatch, Page};
use crate::time::Timestamp;

impl Keyward {
    /// An account's policy and active-key count, with the service default filled in.
    pub async fn get_account(&self, caller: &Caller, account_id: &AccountId) -> Result<Account> {
        caller.authorize(account_id, Access::Read)?;
        let account = self
            .store
            .get_account(account_id, Timestamp::now())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("account {}", crate::error::echo(account_id)))
            })?;
        Ok(self.with_default(account))
    }

    /// Changes an account's policy (root only). Disabling takes effect on the next verify of
    /// every key of the account, cached or not.
    pub async fn update_account(
        &self,
        caller: &Caller,
        account_id: &AccountId,
        patch: &AccountPatch,
    ) -> Result<Account> {
        caller.require_root()?;
        if account_id == super::auth::ROOT_ACCOUNT {
            return Err(Error::FailedPrecondition(
                "the root account's policy does not change: disabling it would lock every operator out"
                    .into(),
            ));
        }
        let account = self
            .store
            .update_account(account_id, patch, Timestamp::now(), Some(caller.key_id()))
            .await?;
        self.cache.invalidate_account(account_id);
        tracing::debug!(%account_id, actor = caller.key_id(), ?patch, "account updated");
        Ok(self.with_default(account))
    }

    /// One page of an account's audit events, newest first.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        query: &AuditQuery,
    ) -> Result<Page<AuditEvent>> {
        caller.authorize(query.account_id.as_str(), Access::Read)?;
        self.store.list_audit_events(query).await
    }

    /// The scope catalog, for any management caller.
    pub fn list_scopes(&self, _caller: &Caller) -> &Catalog {
        &self.catalog
    }

    fn with_default(&self, mut account: Account) -> Account {
        account
            .max_active_keys
            .get_or_insert(self.policy.max_active_keys);
        account
    }
}
