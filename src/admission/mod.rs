//! AdmissionReview ⇄ verdict: parse the review, evaluate the object (and the old object on
//! UPDATE), apply the policy, build the response. Pure and synchronous; the server calls it.

pub mod policy;
pub mod review;

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::evaluate::{Report, Verdict, evaluate_hostedcluster, evaluate_nodepool};
use crate::facts::Facts;
use crate::resources::{HostedCluster, NodePool};

pub use policy::{Decision, DecisionKind, Mode, Policy};
use review::{AdmissionResponse, AdmissionReview, AdmissionReviewResponse, Operation};

/// Which webhook path was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    NodePools,
    HostedClusters,
}

impl Endpoint {
    pub fn kind(self) -> &'static str {
        match self {
            Self::NodePools => "NodePool",
            Self::HostedClusters => "HostedCluster",
        }
    }
}

/// What the review needs from the server: facts, namespace modes and the policy.
pub struct Context<'a> {
    pub facts: &'a Facts,
    /// `live-migration-guard.io/mode` labels of namespaces, when a cluster is connected.
    pub namespace_modes: Option<&'a HashMap<String, String>>,
    pub policy: &'a Policy,
}

/// A request kube-apiserver should not have sent: answered with HTTP 400 and this message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("malformed AdmissionReview: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("malformed AdmissionReview: expected a JSON object")]
    NotAnObject,
    #[error("unsupported AdmissionReview apiVersion {0:?}: this webhook speaks admission.k8s.io/v1")]
    ApiVersion(String),
    #[error("expected kind AdmissionReview, got {0:?}")]
    Kind(String),
    #[error("request.object is required for {0}")]
    MissingObject(&'static str),
}

/// The answer plus what the server logs and counts about it.
#[derive(Debug)]
pub struct Outcome {
    pub review: AdmissionReviewResponse,
    pub uid: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub operation: &'static str,
    pub dry_run: bool,
    pub verdict: Option<Verdict>,
    pub decision: DecisionKind,
    pub mode: Mode,
    pub override_reason: Option<String>,
}

/// Reviews one AdmissionReview body.
pub fn review(body: &[u8], endpoint: Endpoint, ctx: &Context<'_>) -> Result<Outcome, ReviewError> {
    // serde would also accept a JSON array for a struct; an AdmissionReview is an object.
    if body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(ReviewError::NotAnObject);
    }
    let review: AdmissionReview<'_> = serde_json::from_slice(body)?;
    if review.api_version != review::API_VERSION {
        return Err(ReviewError::ApiVersion(review.api_version));
    }
    if review.kind != review::KIND {
        return Err(ReviewError::Kind(review.kind));
    }
    let req = review.request.ok_or(ReviewError::NoRequest)?;
    // A namespace label overrides the global mode; an unparsable one is ignored.
    let mode = req
        .namespace
        .as_deref()
        .and_then(|ns| ctx.namespace_modes?.get(ns)?.parse::<Mode>().ok())
        .unwrap_or(ctx.policy.mode);
    let mut outcome = Outcome {
        review: respond(AdmissionResponse {
            uid: req.uid.clone(),
            allowed: true,
            status: None,
            warnings: Vec::new(),
            audit_annotations: Default::default(),
        }),
        uid: req.uid.clone(),
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone(),
        name: req.name.clone(),
        operation: req.operation.as_str(),
        dry_run: req.dry_run.unwrap_or(false),
        verdict: None,
        decision: DecisionKind::Allow,
        mode,
        override_reason: None,
    };
    // DELETE/CONNECT, subresources (status, scale) and opted-out namespaces pass unevaluated.
    let evaluated = matches!(req.operation, Operation::Create | Operation::Update)
        && req.sub_resource.as_deref().is_none_or(str::is_empty)
        && mode != Mode::Off;
    if !evaluated {
        return Ok(outcome);
    }
    if req.kind.group != crate::resources::HYPERSHIFT_GROUP || req.kind.kind != endpoint.kind() {
        return Ok(warn_only(
            outcome,
            format!(
                "live-migration-guard: {}/{} {} sent to the {} webhook is not evaluated; check the webhook rules",
                req.kind.group,
                req.kind.version,
                req.kind.kind,
                endpoint.kind()
            ),
        ));
    }
    let object = req
        .object
        .ok_or(ReviewError::MissingObject(req.operation.as_str()))?;
    let old = req.old_object.filter(|_| req.operation == Operation::Update);
    let evaluated = match endpoint {
        Endpoint::NodePools => evaluate_pair::<NodePool>(object, old, |np| evaluate_nodepool(np, ctx.facts)),
        Endpoint::HostedClusters => {
            evaluate_pair::<HostedCluster>(object, old, |hc| evaluate_hostedcluster(hc, ctx.facts, &[]))
        }
    };
    let (new, old, requested) = match evaluated {
        Ok(v) => v,
        Err(e) => {
            // The API server validated the object against the CRD; if we still cannot read
            // it, we say so and let it through rather than block on our own limitation.
            return Ok(warn_only(
                outcome,
                format!("live-migration-guard: not evaluated: {e}"),
            ));
        }
    };
    let decision = policy::decide(ctx.policy, mode, &req.uid, &new, old.as_ref(), &requested);
    outcome.verdict = Some(new.verdict);
    outcome.decision = decision.kind;
    outcome.override_reason = decision.override_reason;
    outcome.review = respond(decision.response);
    Ok(outcome)
}

/// Parses and evaluates the new object and, on UPDATE, the old one.
fn evaluate_pair<T>(
    object: &RawValue,
    old: Option<&RawValue>,
    eval: impl Fn(&T) -> Report,
) -> Result<(Report, Option<Report>, policy::Override), String>
where
    T: DeserializeOwned + kube::Resource,
{
    let parse = |raw: &RawValue, which: &str| -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                which.to_owned()
            } else {
                format!("{which} field `{path}`")
            };
            policy::sanitize(&format!("{at}: {}", e.inner()))
        })
    };
    let new = parse(object, "object")?;
    let old = match old {
        Some(raw) => parse(raw, "oldObject").ok().map(|o| eval(&o)),
        None => None,
    };
    Ok((
        eval(&new),
        old,
        policy::Override::from_annotations(new.meta().annotations.as_ref()),
    ))
}

fn warn_only(mut outcome: Outcome, warning: String) -> Outcome {
    outcome.decision = DecisionKind::Warn;
    outcome.review.response.warnings = policy::fit_warnings(vec![policy::sanitize(&warning)]);
    outcome
}

fn respond(response: AdmissionResponse) -> AdmissionReviewResponse {
    AdmissionReviewResponse {
        api_version: review::API_VERSION,
        kind: review::KIND,
        response,
    }
}
