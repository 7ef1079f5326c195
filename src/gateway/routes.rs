//! The route table: required scopes per method and path pattern, for gateways that cannot send
//! them per route.

use serde::{Deserialize, Serialize};

use crate::restriction::{Method, Pattern};
use crate::scope::ScopeName;

/// Most scopes one route may require.
const MAX_ROUTE_SCOPES: usize = 32;

/// One `[[gateway.routes]]` entry as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The HTTP method; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// A path pattern (`*` within a segment, a trailing `*` for the rest), matched against the
    /// request path in its normal form.
    pub path: String,
    /// The scopes a request on this route needs.
    pub scopes: Vec<String>,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    method: Option<Method>,
    path: Pattern,
    scopes: Vec<ScopeName>,
}

impl Route {
    /// Validates a configured route; the error names the field.
    pub fn new(config: &RouteConfig) -> Result<Self, String> {
        let method = config
            .method
            .as_deref()
            .map(Method::parse)
            .transpose()
            .map_err(|e| format!("method: {e}"))?;
        if !config.path.starts_with('/') {
            return Err("path: must start with /".into());
        }
        let path = Pattern::parse(&config.path).map_err(|e| format!("path: {e}"))?;
        if config.scopes.len() > MAX_ROUTE_SCOPES {
            return Err(format!("scopes: at most {MAX_ROUTE_SCOPES}"));
        }
        let scopes = config
            .scopes
            .iter()
            .map(|s| ScopeName::parse(s))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("scopes: {e}"))?;
        Ok(Route {
            method,
            path,
            scopes,
        })
    }

    /// Whether a request with `method` on the normalised `path` takes this route.
    pub fn matches(&self, method: Option<&Method>, path: &str) -> bool {
        let method_matches = match (&self.method, method) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        method_matches && self.path.matches(path)
    }

    /// The scopes a request on this route needs.
    pub fn scopes(&self) -> &[ScopeName] {
        &self.scopes
    }
}
