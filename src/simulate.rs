//! Offline admission (`evaluate --admission`): the AdmissionReview kube-apiserver would send for
//! an object, answered by the server's own [`crate::admission::review`], and the answer as
//! `kubectl apply` prints it. Nothing here decides anything: the verdict, the policy, the
//! warnings and the denial are the webhook's.

use serde_json::{Value, json};

use crate::admission::review::{AdmissionResponse, Status};
use crate::admission::{self, Context, Endpoint, Outcome, ReviewError};

/// The webhooks' names in the chart's ValidatingWebhookConfiguration (kube-apiserver names the
/// webhook in a denial).
pub fn webhook_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::NodePools => "nodepools.live-migration-guard.io",
        Endpoint::HostedClusters => "hostedclusters.live-migration-guard.io",
    }
}

fn resource(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::NodePools => "nodepools",
        Endpoint::HostedClusters => "hostedclusters",
    }
}

/// One object to admit: its document as read, the old object for an UPDATE, the namespace
/// the request is made in.
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub object: &'a Value,
    pub old: Option<&'a Value>,
    pub namespace: String,
    pub uid: String,
}

impl Request<'_> {
    pub fn operation(&self) -> &'static str {
        if self.old.is_some() { "UPDATE" } else { "CREATE" }
    }

    /// The `admission.k8s.io/v1` AdmissionReview kube-apiserver would send, as JSON.
    pub fn review_body(&self) -> Vec<u8> {
        let gvk = json!({
            "group": crate::resources::HYPERSHIFT_GROUP,
            "version": crate::resources::HYPERSHIFT_VERSION,
            "kind": self.endpoint.kind(),
        });
        let gvr = json!({
            "group": crate::resources::HYPERSHIFT_GROUP,
            "version": crate::resources::HYPERSHIFT_VERSION,
            "resource": resource(self.endpoint),
        });
        let name = self
            .object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        let options_kind = if self.old.is_some() {
            "UpdateOptions"
        } else {
            "CreateOptions"
        };
        let review = json!({
            "apiVersion": admission::review::API_VERSION,
            "kind": admission::review::KIND,
            "request": {
                "uid": self.uid,
                "kind": gvk,
                "resource": gvr,
                "requestKind": gvk,
                "requestResource": gvr,
                "name": name,
                "namespace": self.namespace,
                "operation": self.operation(),
                "userInfo": { "username": "live-migration-guard-evaluate" },
                "object": self.object,
                "oldObject": self.old,
                "dryRun": false,
                "options": { "apiVersion": "meta.k8s.io/v1", "kind": options_kind },
            }
        });
        serde_json::to_vec(&review).unwrap_or_default()
    }

    /// The webhook's answer, from the same function the server's handler calls.
    pub fn review(&self, ctx: &Context<'_>) -> Result<Outcome<'static>, ReviewError> {
        admission::review(&self.review_body(), self.endpoint, ctx).map(Outcome::into_owned)
    }
}

/// What `kubectl apply` prints for an answer: the warnings (stderr, `Warning: <text>`), then
/// either its success line (stdout) or the error (stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub warnings: Vec<String>,
    pub result: Result<String, String>,
}

/// `kubectl apply`'s wording of `response` for `request` (read from `file`).
pub fn kubectl(request: &Request<'_>, response: &AdmissionResponse, file: &str) -> Printed {
    let warnings = response
        .warnings
        .iter()
        .map(|w| format!("Warning: {w}"))
        .collect();
    let name = request
        .object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let result = if response.allowed {
        let verb = if request.old.is_some() {
            "configured"
        } else {
            "created"
        };
        Ok(format!(
            "{}.{}/{name} {verb} (admission simulated: nothing was sent)",
            request.endpoint.kind().to_lowercase(),
            crate::resources::HYPERSHIFT_GROUP
        ))
    } else {
        Err(denial(request, response.status.as_ref(), file))
    };
    Printed { warnings, result }
}

/// kube-apiserver wraps a webhook's denial (`admission webhook "NAME" denied the request:
/// MESSAGE`, code at least 400); kubectl prints an `Invalid` one as `The KIND "NAME" is
/// invalid: FIELD: MESSAGE` (each cause on a `* ` line when there are several, duplicates
/// once), any other as `Error from server (REASON): error when creating "FILE": …`.
fn denial(request: &Request<'_>, status: Option<&Status>, file: &str) -> String {
    let deny_text = format!(
        "admission webhook \"{}\" denied the request",
        webhook_name(request.endpoint)
    );
    let Some(status) = status else {
        return format!(
            "Error from server: error when {} \"{file}\": {deny_text} without explanation",
            verb(request)
        );
    };
    if status.reason == "Invalid" {
        let Some(details) = &status.details else {
            return "The request is invalid".to_owned();
        };
        let mut head = "The request is invalid".to_owned();
        if !details.kind.is_empty() || !details.name.is_empty() {
            head = format!("The {} {:?} is invalid", details.kind, details.name);
        }
        let mut causes: Vec<String> = Vec::new();
        for c in &details.causes {
            let line = format!("{}: {}", c.field, c.message);
            if !causes.contains(&line) {
                causes.push(line);
            }
        }
        return match causes.as_slice() {
            [] => head,
            [one] => format!("{head}: {one}"),
            many => {
                let mut s = format!("{head}: ");
                for c in many {
                    s.push_str(&format!("\n* {c}"));
                }
                s
            }
        };
    }
    let message = if status.message.is_empty() {
        format!("{deny_text}: {}", status.reason)
    } else {
        format!("{deny_text}: {}", status.message)
    };
    let from = if status.reason.is_empty() {
        "Error from server".to_owned()
    } else {
        format!("Error from server ({})", status.reason)
    };
    format!("{from}: error when {} \"{file}\": {message}", verb(request))
}

fn verb(request: &Request<'_>) -> &'static str {
    if request.old.is_some() {
        "applying"
    } else {
        "creating"
    }
}
