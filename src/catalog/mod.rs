//! The scope catalog: every permission group a key can hold, with its access kind, risk label
//! and guardrail, plus the presets offered at creation. Loaded from TOML (built in, or
//! `--scopes-file`) once at start; a malformed file stops the server with file, line and problem.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::model::RateLimit;
use crate::restriction::Restrictions;
mod parse;

use parse::{FileToml, Locator, preset, reserved_scopes, scope_def};

const BUILTIN: &str = include_str!("default.toml");

/// Whether a scope only reads or changes things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Reads only.
    Read,
    /// Changes things.
    Write,
}

/// How much trust a scope needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads and safe generation.
    Low,
    /// Ordinary edits.
    Medium,
    /// Trust-sensitive actions.
    High,
}

/// One scope of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDef {
    /// `resource:action`.
    pub name: String,
    /// What it allows.
    pub description: String,
    /// Read or write.
    pub access: Access,
    /// Risk label.
    pub risk: Risk,
    /// Per-key limit for every key using the scope.
    pub guardrail: Option<RateLimit>,
}

/// A named scope set offered at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// Name, e.g. `read_only`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The scopes it grants.
    pub scopes: Vec<String>,
    /// Whether it grants every scope.
    pub grant_all: bool,
    /// Restrictions keys made with it get.
    pub restrictions: Restrictions,
}

/// The loaded catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    scopes: Vec<ScopeDef>,
    /// Scope name → position in `scopes`. Every verify that requires scopes looks each one up
    /// (its rate-limit guardrail), so the map hashes with foldhash (seeded per process, a few
    /// instructions for a scope name) instead of SipHash; the names are the operator's.
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    presets: Vec<Preset>,
}

/// A catalog that could not be loaded: where and why.
#[derive(Debug, thiserror::Error)]
#[error("scope catalog {origin}: {problem}")]
pub struct CatalogError {
    origin: String,
    problem: String,
}

impl Catalog {
    /// The catalog that ships inside the binary.
    pub fn builtin() -> Catalog {
        // The built-in file is tested (see tests below), so it always parses.
        Catalog::parse(BUILTIN, "(built-in)").expect("the built-in catalog is valid")
    }

    /// Loads a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError {
            origin: origin.clone(),
            problem: format!("cannot read it: {e}"),
        })?;
        Catalog::parse(&text, &origin)
    }

    /// Parses catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let at = Locator { text, origin };
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let problem = e.message().to_owned();
            at.fail(e.span(), problem)
        })?;
        let mut catalog = Catalog {
            scopes: Vec::new(),
            index: HashMap::default(),
            presets: Vec::new(),
        };
        for entry in file.scopes {
            let span = Some(entry.name.span());
            let def = scope_def(entry, &at)?;
            if catalog.index.contains_key(&def.name) {
                return Err(at.fail(span, format!("scope {:?} is defined twice", def.name)));
            }
            catalog.push(def);
        }
        for def in reserved_scopes() {
            catalog.push(def);
        }
        for entry in file.presets {
            let preset = preset(entry, &catalog, &at)?;
            catalog.presets.push(preset);
        }
        Ok(catalog)
    }

    fn push(&mut self, def: ScopeDef) {
        self.index.insert(def.name.clone(), self.scopes.len());
        self.scopes.push(def);
    }

    /// The scope named `name`, if the catalog has it.
    pub fn get(&self, name: &str) -> Option<&ScopeDef> {
        self.index.get(name).map(|&i| &self.scopes[i])
    }

    /// Every scope, in catalog order, reserved scopes last.
    pub fn scopes(&self) -> &[ScopeDef] {
        &self.scopes
    }

    /// The preset named `name`.
    pub fn preset(&self, name: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.name == name)
    }

    /// Every preset.
    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{self, KEYS_READ, KEYS_VERIFY, KEYS_WRITE, ROOT};

    #[test]
    fn builtin_models_a_video_platform() {
        let c = Catalog::builtin();
        let own: Vec<_> = c
            .scopes()
            .iter()
            .filter(|s| !scope::is_reserved(&s.name))
            .collect();
        assert!(own.len() >= 35, "{} scopes", own.len());
        for resource in [
            "videos",
            "collections",
            "members",
            "analytics",
            "comments",
            "subscriptions",
            "webhooks",
            "generation",
        ] {
            assert!(
                own.iter()
                    .any(|s| s.name.starts_with(&format!("{resource}:"))),
                "{resource}"
            );
        }
        assert!(c.get("members:email").unwrap().guardrail.is_some());
        assert_eq!(c.get("members:email").unwrap().risk, Risk::High);
        for reserved in [KEYS_READ, KEYS_WRITE, KEYS_VERIFY, ROOT] {
            assert_eq!(
                c.get(reserved).map(|s| s.risk),
                Some(Risk::High),
                "{reserved}"
            );
        }
        let read_only = c.preset("read_only").unwrap();
        assert!(
            read_only
                .scopes
                .iter()
                .all(|s| c.get(s).unwrap().access == Access::Read)
        );
        assert!(read_only.scopes.contains(&"videos:read".to_owned()));
        assert!(!read_only.scopes.iter().any(|s| scope::is_reserved(s)));
        let methods: Vec<_> = read_only
            .restrictions
            .allowed_methods
            .iter()
            .map(|m| m.as_str())
            .collect();
        assert_eq!(methods, ["GET", "HEAD", "OPTIONS"]);
        assert!(
            c.preset("content_agent")
                .unwrap()
                .scopes
                .contains(&"generation:image".to_owned())
        );
        assert!(c.preset("full_access").unwrap().grant_all);
    }

    fn error(text: &str) -> String {
        Catalog::parse(text, "cat.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let bad_access =
            "[[scope]]\nname = \"a:b\"\ndescription = \"x\"\naccess = \"maybe\"\nrisk = \"low\"\n";
        let e = error(bad_access);
        assert!(e.contains("cat.toml:4") && e.contains("maybe"), "{e}");

        let bad_name = "[[scope]]\nname = \"a:b\"\ndescription = \"x\"\naccess = \"read\"\nrisk = \"low\"\n\n[[scope]]\nname = \"Bad*\"\ndescription = \"x\"\naccess = \"read\"\nrisk = \"low\"\n";
        let e = error(bad_name);
        assert!(e.contains("cat.toml:8") && e.contains("Bad*"), "{e}");

        let unknown_in_preset = "[[preset]]\nname = \"p\"\nscopes = [\"nope:read\"]\n";
        let e = error(unknown_in_preset);
        assert!(e.contains("cat.toml:3") && e.contains("nope:read"), "{e}");

        let reserved =
            "[[scope]]\nname = \"root\"\ndescription = \"x\"\naccess = \"read\"\nrisk = \"low\"\n";
        assert!(error(reserved).contains("reserved"));

        let syntax = "[[scope]\nname = ";
        assert!(
            error(syntax).starts_with("scope catalog cat.toml:1"),
            "{}",
            error(syntax)
        );

        let unknown_field = "[[scope]]\nname = \"a:b\"\ndescription = \"x\"\naccess = \"read\"\nrisk = \"low\"\ncolour = 1\n";
        assert!(error(unknown_field).contains("colour"));
    }

    #[test]
    fn duplicates_are_refused() {
        let twice =
            "[[scope]]\nname = \"a:b\"\ndescription = \"x\"\naccess = \"read\"\nrisk = \"low\"\n"
                .repeat(2);
        let e = error(&twice);
        assert!(e.contains("cat.toml:7") && e.contains("twice"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_a_catalog_or_a_located_error(text in "\\PC{0,400}") {
            if let Err(e) = Catalog::parse(&text, "fuzz.toml") {
                prop_assert!(e.to_string().contains("fuzz.toml:"), "{e}");
            }
        }

        #[test]
        fn scope_tables_with_odd_fields_never_panic(
            name in "[a-z:*. ]{0,20}",
            access in "[a-z]{0,8}",
            risk in "[a-z]{0,8}",
        ) {
            let text = format!(
                "[scopes.\"{name}\"]\ndescription = \"d\"\naccess = \"{access}\"\nrisk = \"{risk}\"\n"
            );
            let _ = Catalog::parse(&text, "fuzz.toml");
        }
    }
}
