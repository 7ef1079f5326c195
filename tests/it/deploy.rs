//! The deployment files keep the security settings a platform team needs: a numeric non-root
//! user in the image, and Pod Security "restricted" fields in the Kubernetes manifest. (No
//! container engine or cluster runs on the build machines; the files are checked as text.)

const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");
const MANIFEST: &str = include_str!("../../deploy/kubernetes/keyward.yaml");

#[test]
fn the_image_runs_as_a_numeric_non_root_user_with_a_healthcheck() {
    assert!(DOCKERFILE.contains("\nUSER 10001:10001\n"), "numeric USER");
    assert!(DOCKERFILE.contains("HEALTHCHECK"));
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
    ] {
        assert!(MANIFEST.contains(field), "missing {field}");
    }
}
