//! The deployment files keep the security settings a platform team needs: a numeric non-root
//! user in the image, and Pod Security "restricted" fields in the Kubernetes manifest. (No
//! container engine or cluster runs on the build machines; the files are checked as text.)

const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");
const MANIFEST: &str = include_str!("../../deploy/kubernetes/keyward.yaml");

#[test]
fn the_image_runs_as_a_numeric_non_root_user_with_a_healthcheck() {
    assert!(DOCKERFILE.contains("\nUSER 10001:10001\n"), "numeric USER");
    assert!(DOCKERFILE.contains("HEALTHCHECK"));
    // Exact base versions, and dependencies cached in their own layer.
    assert!(DOCKERFILE.contains("FROM rust:1.95.0-bookworm AS build"));
    assert!(DOCKERFILE.contains("FROM debian:12.12-slim"));
    let deps = DOCKERFILE
        .find("COPY Cargo.toml Cargo.lock")
        .expect("manifests first");
    let sources = DOCKERFILE.find("COPY src src").expect("sources later");
    assert!(
        deps < sources,
        "the dependency layer comes before the sources"
    );
    assert!(DOCKERFILE.contains("\"keyward\", \"health\""));
}

#[test]
fn the_deployment_meets_pod_security_restricted() {
    for field in [
        "runAsNonRoot: true",
        "runAsUser: 10001",
        "seccompProfile: {type: RuntimeDefault}",
        "capabilities: {drop: [ALL]}",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "startupProbe:",
        "readinessProbe:",
        "livenessProbe:",
        "preStop:",
        "secretKeyRef: {name: keyward-db, key: url}",
        "name: KEYWARD_BOOTSTRAP",
        "automountServiceAccountToken: false",
        // TLS, caller authentication, ManageService on its own port.
        "name: KEYWARD_TLS_CERT",
        "secretName: keyward-tls",
        "name: KEYWARD_VERIFY_AUTH\n              value: \"true\"",
        "name: KEYWARD_MANAGE_LISTEN",
        // Migrations before serving; replicas on PostgreSQL; disruptions and reachability.
        "initContainers:",
        "args: [\"migrate\"]",
        "replicas: 3",
        "kind: PodDisruptionBudget",
        "kind: NetworkPolicy",
        "keyward.io/role: gateway",
        "keyward.io/role: backend",
        "clusterIP: None",
        // Native gRPC probes on the plaintext health port (the kubelet cannot speak TLS).
        "grpc: {port: 50053, service: keyward.v1.VerifyService}",
        "name: KEYWARD_HEALTH_LISTEN",
        // Rate limits shared through Valkey, reachable from keyward's pods only.
        "name: KEYWARD_RATE_LIMIT_STORE",
        "secretKeyRef: {name: keyward-valkey, key: url}",
        "image: valkey/valkey:8",
        "name: keyward-valkey",
    ] {
        assert!(MANIFEST.contains(field), "missing {field}");
    }
    // Every container, the migration one included, runs restricted.
    assert_eq!(
        MANIFEST.matches("capabilities: {drop: [ALL]}").count(),
        3,
        "every container (keyward, its migration, Valkey) drops every capability"
    );
    assert_eq!(MANIFEST.matches("readOnlyRootFilesystem: true").count(), 3);
}

const ENVOY: &str = include_str!("../../deploy/envoy.yaml");
const TRAEFIK: &str = include_str!("../../deploy/traefik.yml");
const CADDY: &str = include_str!("../../deploy/Caddyfile");

/// The gateway configurations keep the settings that make them fail closed and keep the key
/// from the upstream (nginx's is run for real in `nginx.rs`).
#[test]
fn the_gateway_configurations_fail_closed_and_strip_the_key() {
    for needle in [
        "envoy.filters.http.ext_authz",
        "failure_mode_allow: false",
        "timeout: 0.25s",
        "envoy_grpc: { cluster_name: keyward }",
        "http2_protocol_options",
        "scopes: \"videos:read\"",
        "transport_api_version: V3",
    ] {
        assert!(ENVOY.contains(needle), "envoy.yaml lacks {needle}");
    }
    for needle in [
        "forwardAuth:",
        "/auth?scopes=videos:read",
        "X-Keyward-Account-Id",
        "Authorization: \"\"",
        "X-Api-Key: \"\"",
    ] {
        assert!(TRAEFIK.contains(needle), "traefik.yml lacks {needle}");
    }
    for needle in [
        "forward_auth keyward:8080",
        "uri /auth?scopes=videos:read",
        "copy_headers X-Keyward-Key-Id X-Keyward-Account-Id",
        "request_header -Authorization",
        "request_header -X-Api-Key",
    ] {
        assert!(CADDY.contains(needle), "Caddyfile lacks {needle}");
    }
    assert!(DOCKERFILE.contains("KEYWARD_HTTP_LISTEN=0.0.0.0:8080"));
}

#[test]
fn the_license_file_matches_the_manifest() {
    let license = include_str!("../../LICENSE");
    let manifest = include_str!("../../Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
}
