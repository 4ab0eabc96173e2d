//! Authorization as RBAC decides it for the kubeconfig's user: everything,
//! except what the knobs take away (`create` on `pods/exec`, `patch` on
//! deployments). The refused requests answer 403 with Kubernetes' message,
//! and `SelfSubjectAccessReview` (`kubectl auth can-i`) gives the same
//! verdicts without doing anything.
use super::cluster::Knobs;
use crate::SimState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// The user the simulated kubeconfig authenticates as.
pub const USER: &str = "system:serviceaccount:default:imsflow";

/// What a request asks to do, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
}

impl Attributes {
    pub fn new(verb: &str, group: &str, resource: &str, subresource: &str, ns: &str) -> Self {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: ns.into(),
        }
    }

    fn is(&self, verbs: &[&str], group: &str, resource: &str, subresource: &str) -> bool {
        (verbs.contains(&self.verb.as_str()) || self.verb == "*")
            && (self.group == group || self.group == "*")
            && (self.resource == resource || self.resource == "*")
            && self.subresource == subresource
    }
}

/// RBAC's verdict. A `*` in the request covers what the knobs deny, so it
/// is refused then too.
pub fn permits(knobs: &Knobs, a: &Attributes) -> bool {
    // An exec over WebSocket is a GET, authorized as `create` since
    // Kubernetes 1.30 (and as `get` before): both are taken away.
    let exec = a.is(&["create", "get"], "", "pods", "exec");
    let patch = a.is(&["patch", "update"], "apps", "deployments", "");
    !(knobs.exec_forbidden && exec || knobs.patch_forbidden && patch)
}

/// The 403 Kubernetes answers a refused request with.
pub fn forbidden(a: &Attributes, kind: &str, name: &str) -> Response {
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!(
            "{qualified} \"{name}\" is forbidden: User \"{USER}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
            a.verb, a.group, a.namespace
        ),
        "reason": "Forbidden", "details": { "name": name, "group": a.group, "kind": kind }, "code": 403 });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: 201 with
/// the review and its `status` (`allowed`, and RBAC's `reason` when it
/// allows; a denial has none). Not stored, as in Kubernetes.
pub async fn self_subject_access_review(State(s): State<Arc<SimState>>, body: Bytes) -> Response {
    let invalid =
        |message: String| super::status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    let mut review: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return super::status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the body is not a JSON object".into(),
            );
        }
    };
    if review["kind"] != "SelfSubjectAccessReview"
        || review["apiVersion"] != "authorization.k8s.io/v1"
    {
        return super::status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the object is not an authorization.k8s.io/v1 SelfSubjectAccessReview".into(),
        );
    }
    let spec = &review["spec"];
    let (resource, non_resource) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    if resource.is_null() == non_resource.is_null() {
        return invalid(
            "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        );
    }
    let allowed = if resource.is_object() {
        let field = |k: &str| resource[k].as_str().unwrap_or_default();
        let a = Attributes::new(
            field("verb"),
            field("group"),
            field("resource"),
            field("subresource"),
            field("namespace"),
        );
        if a.verb.is_empty() {
            return invalid("spec.resourceAttributes.verb: Required value".into());
        }
        permits(&s.cluster.lock().unwrap().knobs, &a)
    } else {
        true
    };
    review["metadata"] = json!({ "creationTimestamp": null });
    review["status"] = if allowed {
        json!({ "allowed": true, "reason": format!("RBAC: allowed by ClusterRoleBinding \"imsflow\" of ClusterRole \"cluster-admin\" to User \"{USER}\"") })
    } else {
        json!({ "allowed": false })
    };
    (StatusCode::CREATED, Json(review)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knobs_take_away_exec_and_patch_and_nothing_else() {
        let exec = Attributes::new("create", "", "pods", "exec", "services");
        let patch = Attributes::new("patch", "apps", "deployments", "", "services");
        let list = Attributes::new("list", "", "pods", "", "services");
        let all = Attributes::new("*", "*", "*", "exec", "services");
        let mut knobs = Knobs::default();
        assert!(
            [&exec, &patch, &list, &all]
                .iter()
                .all(|a| permits(&knobs, a))
        );
        knobs.exec_forbidden = true;
        assert!(!permits(&knobs, &exec) && permits(&knobs, &patch) && !permits(&knobs, &all));
        knobs.exec_forbidden = false;
        knobs.patch_forbidden = true;
        assert!(permits(&knobs, &exec) && !permits(&knobs, &patch) && permits(&knobs, &list));
    }
}
