//! `keyward.v1.ManageService`: authenticates the bearer key, parses the request into domain
//! values (naming every bad field), and calls the domain service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{rate_limit, rate_limit_input, raw_duration, restrictions, timestamp};
use super::requests::list_fingerprint;
use super::trace::{record_caller, record_target};
use crate::audit::{Action, AuditEvent, AuditQuery};
use crate::catalog::{self, Preset, ScopeDef};
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::limits::{MAX_LEAK_LEN, MAX_LEAK_REPORTS};
use crate::model::Account;
use crate::proto::{self, manage_service_server::ManageService};
use crate::request::{self, Violations, page_size, query_fingerprint};
use crate::service::{Access, CallContext, Caller, Imported, Keyward, Leak};

/// The ManageService adapter.
#[derive(Debug, Clone)]
pub struct ManageApi {
    service: Arc<Keyward>,
}

impl ManageApi {
    /// An adapter over the domain service.
    pub fn new(service: Arc<Keyward>) -> Self {
        ManageApi { service }
    }

    async fn caller<T>(&self, request: &Request<T>, rpc: &str, access: Access) -> Result<Caller> {
        let bearer = super::bearer(request)?;
        let path = format!("/keyward.v1.ManageService/{rpc}");
        let call = CallContext {
            peer: super::peer(request).map(|p| p.remote_addr.ip().to_canonical()),
            rpc: &path,
            access,
        };
        let caller = self.service.authenticate(bearer, &call).await?;
        record_caller(caller.key_id(), caller.account_id());
        Ok(caller)
    }
}

/// Most portal sessions ListPortalSessions answers.
const PORTAL_SESSIONS_LISTED: u32 = 200;

#[tonic::async_trait]
impl ManageService for ManageApi {
    async fn create_key(
        &self,
        request: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::CreateKeyResponse>, Status> {
        let caller = self.caller(&request, "CreateKey", Access::Write).await?;
        let create = request::create_key(
            Violations::default(),
            super::requests::create_key(request.into_inner()),
        )?;
        let (secret, key) = self.service.create_key(&caller, create).await?;
        record_target(&key.id);
        Ok(Response::new(proto::CreateKeyResponse {
            key: secret.expose().to_owned(),
            api_key: Some((&key).into()),
        }))
    }

    async fn get_key(
        &self,
        request: Request<proto::GetKeyRequest>,
    ) -> Result<Response<proto::GetKeyResponse>, Status> {
        let caller = self.caller(&request, "GetKey", Access::Read).await?;
        let id = key_id(&request.get_ref().id)?;
        let key = self.service.get_key(&caller, &id).await?;
        Ok(Response::new(proto::GetKeyResponse {
            api_key: Some((&key).into()),
        }))
    }

    async fn list_keys(
        &self,
        request: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        let caller = self.caller(&request, "ListKeys", Access::Read).await?;
        let tokens = self.service.page_tokens();
        let query = request::list_keys(
            Violations::default(),
            &super::requests::list_keys(request.get_ref()),
            tokens,
            caller.key_id(),
            list_fingerprint(request.get_ref()),
        )?;
        let fingerprint = list_fingerprint(request.get_ref());
        if query.by_usage.is_some() {
            let page = self.service.list_keys_by_usage(&caller, &query).await?;
            return Ok(Response::new(proto::ListKeysResponse {
                api_keys: page.items.iter().map(|(key, _)| key.into()).collect(),
                next_page_token: tokens.seal(page.next, caller.key_id(), fingerprint),
                usage: page
                    .items
                    .iter()
                    .map(|(key, used)| (key.id.to_string(), *used))
                    .collect(),
            }));
        }
        let page = self.service.list_keys(&caller, &query).await?;
        Ok(Response::new(proto::ListKeysResponse {
            api_keys: page.items.iter().map(Into::into).collect(),
            next_page_token: tokens.seal(page.next, caller.key_id(), fingerprint),
            usage: Default::default(),
        }))
    }

    async fn update_key(
        &self,
        request: Request<proto::UpdateKeyRequest>,
    ) -> Result<Response<proto::UpdateKeyResponse>, Status> {
        let caller = self.caller(&request, "UpdateKey", Access::Write).await?;
        let request = request.into_inner();
        let id = key_id(&request.id)?;
        let patch =
            request::update_key(Violations::default(), &super::requests::update_key(request))?;
        let key = self.service.update_key(&caller, &id, &patch).await?;
        Ok(Response::new(proto::UpdateKeyResponse {
            api_key: Some((&key).into()),
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<proto::RevokeKeyRequest>,
    ) -> Result<Response<proto::RevokeKeyResponse>, Status> {
        let caller = self.caller(&request, "RevokeKey", Access::Write).await?;
        let id = key_id(&request.get_ref().id)?;
        let key = self.service.revoke_key(&caller, &id).await?;
        Ok(Response::new(proto::RevokeKeyResponse {
            api_key: Some((&key).into()),
        }))
    }

    async fn import_keys(
        &self,
        request: Request<proto::ImportKeysRequest>,
    ) -> Result<Response<proto::ImportKeysResponse>, Status> {
        let caller = self.caller(&request, "ImportKeys", Access::Write).await?;
        let request = request.into_inner();
        // Bounded before any record is looked at.
        request::import_size(request.keys.len())?;
        let records = request
            .keys
            .iter()
            .enumerate()
            .map(|(i, r)| {
                request::imported_key(&super::requests::imported_key(r))
                    .map_err(|e| format!("keys[{i}].{e}"))
            })
            .collect();
        let outcomes = self.service.import_keys(&caller, records).await?;
        let results = outcomes
            .into_iter()
            .map(|outcome| {
                use proto::ImportOutcome as O;
                let (outcome, key_id, error) = match outcome {
                    Imported::Stored(id) => (O::Imported, id, String::new()),
                    Imported::AlreadyPresent(id) => (O::AlreadyPresent, id, String::new()),
                    Imported::Rejected(why) => (O::Rejected, String::new(), why),
                };
                proto::ImportKeyResult {
                    outcome: outcome.into(),
                    key_id,
                    error,
                }
            })
            .collect();
        Ok(Response::new(proto::ImportKeysResponse { results }))
    }

    async fn report_leaked_keys(
        &self,
        request: Request<proto::ReportLeakedKeysRequest>,
    ) -> Result<Response<proto::ReportLeakedKeysResponse>, Status> {
        let caller = self
            .caller(&request, "ReportLeakedKeys", Access::Write)
            .await?;
        let request = request.into_inner();
        // Bounded before any string is looked at.
        let mut v = Violations::default();
        if request.keys.is_empty() || request.keys.len() > MAX_LEAK_REPORTS {
            v.add("keys", format!("give 1-{MAX_LEAK_REPORTS} strings"));
        } else if let Some(i) = request.keys.iter().position(|k| k.len() > MAX_LEAK_LEN) {
            v.add(
                format!("keys[{i}]"),
                format!("at most {MAX_LEAK_LEN} bytes"),
            );
        }
        let source = request.source.trim();
        if source.is_empty() || source.chars().count() > MAX_LEAK_LEN {
            v.add(
                "source",
                format!("say where the strings were found, 1-{MAX_LEAK_LEN} characters"),
            );
        } else if crate::error::echo(source).starts_with("<redacted") {
            // The source is logged and stored in the audit log: never a key.
            v.add("source", "must not contain an API key");
        }
        v.finish(())?;
        let outcomes = self
            .service
            .report_leaked_keys(&caller, &request.keys, source)
            .await?;
        let results = outcomes
            .into_iter()
            .map(|leak| {
                use proto::LeakOutcome as O;
                let (outcome, key) = match leak {
                    Leak::NotAKey => (O::NotAKey, None),
                    Leak::Unknown => (O::Unknown, None),
                    Leak::RevokedNow(key) => (O::RevokedNow, Some(key)),
                    Leak::AlreadyRevoked(key) => (O::AlreadyRevoked, Some(key)),
                };
                proto::LeakedKeyResult {
                    outcome: outcome.into(),
                    key_id: key.as_ref().map(|k| k.id.to_string()).unwrap_or_default(),
                    account_id: key
                        .as_ref()
                        .map(|k| k.account_id.to_string())
                        .unwrap_or_default(),
                    prefix: key.as_ref().map(|k| k.prefix.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(proto::ReportLeakedKeysResponse { results }))
    }

    async fn revoke_account_keys(
        &self,
        request: Request<proto::RevokeAccountKeysRequest>,
    ) -> Result<Response<proto::RevokeAccountKeysResponse>, Status> {
        let caller = self
            .caller(&request, "RevokeAccountKeys", Access::Write)
            .await?;
        let account_id = AccountId::parse(&request.get_ref().account_id)
            .map_err(|e| Error::invalid("account_id", e))?;
        record_target(account_id.as_str());
        let keys = self
            .service
            .revoke_account_keys(&caller, &account_id)
            .await?;
        Ok(Response::new(proto::RevokeAccountKeysResponse {
            api_keys: keys.iter().map(Into::into).collect(),
        }))
    }

    async fn rotate_key(
        &self,
        request: Request<proto::RotateKeyRequest>,
    ) -> Result<Response<proto::RotateKeyResponse>, Status> {
        let caller = self.caller(&request, "RotateKey", Access::Write).await?;
        let request = request.into_inner();
        let id = key_id(&request.id)?;
        let grace = request::grace(request.grace_period.as_ref().map(raw_duration))?;
        let (secret, new, old) = self.service.rotate_key(&caller, &id, grace).await?;
        Ok(Response::new(proto::RotateKeyResponse {
            key: secret.expose().to_owned(),
            api_key: Some((&new).into()),
            previous_api_key: Some((&old).into()),
        }))
    }

    async fn list_scopes(
        &self,
        request: Request<proto::ListScopesRequest>,
    ) -> Result<Response<proto::ListScopesResponse>, Status> {
        let caller = self.caller(&request, "ListScopes", Access::Read).await?;
        let catalog = self.service.list_scopes(&caller);
        Ok(Response::new(proto::ListScopesResponse {
            scopes: catalog.scopes().iter().map(scope).collect(),
            presets: catalog.presets().iter().map(preset).collect(),
        }))
    }

    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::GetAccountResponse>, Status> {
        let caller = self.caller(&request, "GetAccount", Access::Read).await?;
        let account_id = AccountId::parse(&request.get_ref().account_id)
            .map_err(|e| Error::invalid("account_id", e))?;
        record_target(account_id.as_str());
        let account = self.service.get_account(&caller, &account_id).await?;
        Ok(Response::new(proto::GetAccountResponse {
            account: Some(account_message(&account)),
        }))
    }

    async fn update_account(
        &self,
        request: Request<proto::UpdateAccountRequest>,
    ) -> Result<Response<proto::UpdateAccountResponse>, Status> {
        let caller = self
            .caller(&request, "UpdateAccount", Access::Write)
            .await?;
        let request = request.into_inner();
        let input = request::UpdateAccountInput {
            paths: request.update_mask.map(|m| m.paths).unwrap_or_default(),
            max_active_keys: request.max_active_keys,
            disabled: request.disabled,
            rate_limit: request.rate_limit.as_ref().map(rate_limit_input),
        };
        let (account_id, patch) =
            request::update_account(Violations::default(), &request.account_id, &input)?;
        record_target(account_id.as_str());
        let account = self
            .service
            .update_account(&caller, &account_id, &patch)
            .await?;
        Ok(Response::new(proto::UpdateAccountResponse {
            account: Some(account_message(&account)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let caller = self
            .caller(&request, "ListAuditEvents", Access::Read)
            .await?;
        let r = request.get_ref();
        let mut v = Violations::default();
        let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
        let page_size = page_size(r.page_size);
        let fingerprint = query_fingerprint(&["audit", &r.account_id]);
        let tokens = self.service.page_tokens();
        let before =
            (tokens.open(&r.page_token, caller.key_id(), fingerprint)).unwrap_or_else(|e| {
                v.add("page_token", e);
                None
            });
        let query = v.finish_parsed(account_id.map(|account_id| AuditQuery {
            account_id,
            page_size,
            before,
        }))?;
        let page = self.service.list_audit_events(&caller, &query).await?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            events: page.items.iter().map(event).collect(),
            next_page_token: tokens.seal(page.next, caller.key_id(), fingerprint),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<proto::GetUsageRequest>,
    ) -> Result<Response<proto::GetUsageResponse>, Status> {
        let caller = self.caller(&request, "GetUsage", Access::Read).await?;
        let input = super::requests::usage(request.get_ref());
        let tokens = self.service.page_tokens();
        let page = tokens.open(
            &request.get_ref().page_token,
            caller.key_id(),
            input.fingerprint(),
        );
        let query = request::usage(
            Violations::default(),
            &input,
            page,
            crate::time::Timestamp::now(),
        )?;
        let usage = self.service.get_usage(&caller, query).await?;
        let next = super::convert::next_usage_offset(&usage);
        Ok(Response::new(super::convert::usage(
            &usage,
            tokens.seal(next, caller.key_id(), input.fingerprint()),
        )))
    }

    async fn create_portal_session(
        &self,
        request: Request<proto::CreatePortalSessionRequest>,
    ) -> Result<Response<proto::CreatePortalSessionResponse>, Status> {
        let caller = self
            .caller(&request, "CreatePortalSession", Access::Write)
            .await?;
        let r = request.into_inner();
        let new =
            request::portal_session(Violations::default(), super::requests::portal_session(r))?;
        let link = self.service.create_portal_session(&caller, new).await?;
        let idle = self.service.portal_settings().idle_timeout;
        Ok(Response::new(proto::CreatePortalSessionResponse {
            url: link.url,
            session: Some(super::convert::portal_session(&link.session, idle)),
        }))
    }

    async fn list_portal_sessions(
        &self,
        request: Request<proto::ListPortalSessionsRequest>,
    ) -> Result<Response<proto::ListPortalSessionsResponse>, Status> {
        let caller = self
            .caller(&request, "ListPortalSessions", Access::Read)
            .await?;
        let mut v = Violations::default();
        let account_id = v.parse(
            "account_id",
            &request.get_ref().account_id,
            AccountId::parse,
        );
        let account_id = v.finish_parsed(account_id)?;
        let sessions = self
            .service
            .list_portal_sessions(&caller, &account_id, PORTAL_SESSIONS_LISTED)
            .await?;
        let idle = self.service.portal_settings().idle_timeout;
        Ok(Response::new(proto::ListPortalSessionsResponse {
            sessions: sessions
                .iter()
                .map(|s| super::convert::portal_session(s, idle))
                .collect(),
        }))
    }

    async fn revoke_portal_session(
        &self,
        request: Request<proto::RevokePortalSessionRequest>,
    ) -> Result<Response<proto::RevokePortalSessionResponse>, Status> {
        let caller = self
            .caller(&request, "RevokePortalSession", Access::Write)
            .await?;
        let r = request.get_ref();
        let mut v = Violations::default();
        let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
        if r.id.is_empty() {
            v.add("id", "required");
        }
        let account_id = v.finish_parsed(account_id)?;
        let session = self
            .service
            .revoke_portal_session(&caller, &account_id, &r.id)
            .await?;
        let idle = self.service.portal_settings().idle_timeout;
        Ok(Response::new(proto::RevokePortalSessionResponse {
            session: Some(super::convert::portal_session(&session, idle)),
        }))
    }
}

fn scope(s: &ScopeDef) -> proto::Scope {
    proto::Scope {
        name: s.name.clone(),
        description: s.description.clone(),
        access: match s.access {
            catalog::Access::Read => proto::ScopeAccess::Read,
            catalog::Access::Write => proto::ScopeAccess::Write,
        }
        .into(),
        risk: match s.risk {
            catalog::Risk::Low => proto::ScopeRisk::Low,
            catalog::Risk::Medium => proto::ScopeRisk::Medium,
            catalog::Risk::High => proto::ScopeRisk::High,
        }
        .into(),
        guardrail: s.guardrail.as_ref().map(rate_limit),
    }
}

fn preset(p: &Preset) -> proto::Preset {
    proto::Preset {
        name: p.name.clone(),
        description: p.description.clone(),
        scopes: p.scopes.clone(),
        grant_all: p.grant_all,
        restrictions: Some(restrictions(&p.restrictions)),
    }
}

fn event(e: &AuditEvent) -> proto::AuditEvent {
    use proto::AuditAction as P;
    proto::AuditEvent {
        id: e.id.clone(),
        time: Some(timestamp(e.time)),
        actor_key_id: e.actor_key_id.as_deref().unwrap_or_default().to_owned(),
        account_id: e.account_id.to_string(),
        action: match e.action {
            Action::KeyCreated => P::KeyCreated,
            Action::KeyUpdated => P::KeyUpdated,
            Action::KeyRevoked => P::KeyRevoked,
            Action::KeyRotated => P::KeyRotated,
            Action::AccountUpdated => P::AccountUpdated,
            Action::KeysImported => P::KeysImported,
        }
        .into(),
        target_key_id: e.target_key_id.as_deref().unwrap_or_default().to_owned(),
        changes: e
            .changes
            .iter()
            .map(|c| proto::FieldChange {
                field: c.field.clone(),
                old_value: c.old_value.clone(),
                new_value: c.new_value.clone(),
            })
            .collect(),
    }
}

fn account_message(a: &Account) -> proto::Account {
    proto::Account {
        account_id: a.account_id.to_string(),
        max_active_keys: a.max_active_keys.unwrap_or_default(),
        disabled: a.disabled,
        active_keys: a.active_keys,
        rate_limit: a.rate_limit.as_ref().map(rate_limit),
    }
}

/// The key a request names, recorded as the call's target.
fn key_id(id: &str) -> Result<crate::ids::KeyId> {
    let id = request::key_id(id)?;
    record_target(id.as_str());
    Ok(id)
}
