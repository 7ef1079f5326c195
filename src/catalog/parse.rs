//! Reading a catalog file: the TOML shapes, and the checks each scope and preset must pass,
//! with errors located at `file:line`.

use serde::Deserialize;
use toml::Spanned;

use super::{Access, Catalog, CatalogError, Preset, Risk, ScopeDef};
use crate::duration;
use crate::model::RateLimit;
use crate::restriction::{Method, Restrictions};
use crate::scope::{self, KEYS_READ, KEYS_VERIFY, KEYS_WRITE, ROOT};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileToml {
    #[serde(default, rename = "scope")]
    pub(super) scopes: Vec<ScopeToml>,
    #[serde(default, rename = "preset")]
    pub(super) presets: Vec<PresetToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeToml {
    pub(super) name: Spanned<String>,
    description: String,
    access: Access,
    risk: Risk,
    guardrail: Option<Spanned<GuardrailToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardrailToml {
    limit: u32,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PresetToml {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    all_reads: bool,
    #[serde(default)]
    grant_all: bool,
    #[serde(default)]
    allowed_methods: Vec<Spanned<String>>,
}

/// Where catalog text came from, to name a line in errors.
pub(super) struct Locator<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
}

impl Locator<'_> {
    pub(super) fn fail(
        &self,
        span: Option<std::ops::Range<usize>>,
        problem: String,
    ) -> CatalogError {
        let origin = match span {
            Some(span) => format!(
                "{}:{}",
                self.origin,
                1 + self.text[..span.start.min(self.text.len())]
                    .matches('\n')
                    .count()
            ),
            None => self.origin.to_owned(),
        };
        CatalogError { origin, problem }
    }
}

/// One `[[scopes]]` entry, checked: a well-formed, unreserved name and a sane guardrail.
pub(super) fn scope_def(entry: ScopeToml, at: &Locator<'_>) -> Result<ScopeDef, CatalogError> {
    let name = entry.name.get_ref();
    let span = Some(entry.name.span());
    scope::check_name(name).map_err(|e| at.fail(span.clone(), e))?;
    if scope::is_reserved(name) {
        return Err(at.fail(
            span,
            format!(
                "{name:?} is a reserved system scope; it is always present and cannot be redefined"
            ),
        ));
    }
    let guardrail = match entry.guardrail {
        None => None,
        Some(g) => {
            let span = Some(g.span());
            let g = g.into_inner();
            let window = duration::parse(&g.window)
                .map_err(|e| at.fail(span.clone(), format!("guardrail window: {e}")))?;
            if g.limit == 0 || window.is_zero() {
                return Err(at.fail(
                    span,
                    "a guardrail needs a limit and a window above zero".into(),
                ));
            }
            Some(RateLimit {
                limit: g.limit,
                window_secs: window.as_secs(),
            })
        }
    };
    Ok(ScopeDef {
        name: name.clone(),
        description: entry.description,
        access: entry.access,
        risk: entry.risk,
        guardrail,
    })
}

/// The reserved system scopes, always in the catalog, all high risk.
pub(super) fn reserved_scopes() -> impl Iterator<Item = ScopeDef> {
    [
        (
            KEYS_READ,
            "Read keys of the key's own account",
            Access::Read,
        ),
        (
            KEYS_WRITE,
            "Create, change, rotate and revoke keys of the key's own account",
            Access::Write,
        ),
        (
            KEYS_VERIFY,
            "Call Verify when keyward requires an authenticated caller (gateways)",
            Access::Read,
        ),
        (
            ROOT,
            "Manage keys and policy of every account",
            Access::Write,
        ),
    ]
    .into_iter()
    .map(|(name, description, access)| ScopeDef {
        name: name.to_owned(),
        description: description.to_owned(),
        access,
        risk: Risk::High,
        guardrail: None,
    })
}

/// One `[[presets]]` entry, checked against the scopes already in `catalog`.
pub(super) fn preset(
    entry: PresetToml,
    catalog: &Catalog,
    at: &Locator<'_>,
) -> Result<Preset, CatalogError> {
    let name = entry.name.get_ref().clone();
    let span = Some(entry.name.span());
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(at.fail(
            span,
            format!("preset name {name:?} must be lowercase letters, digits and '_'"),
        ));
    }
    if catalog.presets.iter().any(|p| p.name == name) {
        return Err(at.fail(span, format!("preset {name:?} is defined twice")));
    }
    let mut scopes: Vec<String> = Vec::new();
    if entry.all_reads {
        scopes.extend(
            catalog
                .scopes
                .iter()
                .filter(|s| s.access == Access::Read && !scope::is_reserved(&s.name))
                .map(|s| s.name.clone()),
        );
    }
    for s in &entry.scopes {
        if catalog.get(s.get_ref()).is_none() {
            return Err(at.fail(
                Some(s.span()),
                format!("preset {name:?} names unknown scope {:?}", s.get_ref()),
            ));
        }
        if !scopes.contains(s.get_ref()) {
            scopes.push(s.get_ref().clone());
        }
    }
    if scopes.is_empty() && !entry.grant_all {
        return Err(at.fail(
            span,
            format!("preset {name:?} grants nothing: give scopes, all_reads or grant_all"),
        ));
    }
    let mut restrictions = Restrictions::default();
    for m in &entry.allowed_methods {
        restrictions
            .allowed_methods
            .push(Method::parse(m.get_ref()).map_err(|e| at.fail(Some(m.span()), e))?);
    }
    Ok(Preset {
        name,
        description: entry.description,
        scopes,
        grant_all: entry.grant_all,
        restrictions,
    })
}
