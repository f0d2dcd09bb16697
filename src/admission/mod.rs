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
use review::{AdmissionResponse, AdmissionReview, AdmissionReviewResponse, Operation, ReviewStr};

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
pub struct Outcome<'a> {
    pub review: AdmissionReviewResponse,
    /// The request's, borrowed from the body where it had no escapes.
    pub uid: ReviewStr<'a>,
    pub kind: ReviewStr<'a>,
    pub namespace: Option<ReviewStr<'a>>,
    pub name: Option<ReviewStr<'a>>,
    pub operation: &'static str,
    pub dry_run: bool,
    pub verdict: Option<Verdict>,
    pub decision: DecisionKind,
    pub mode: Mode,
    pub override_reason: Option<String>,
}

impl Outcome<'_> {
    /// The same outcome, owning its strings (to outlive the body).
    pub fn into_owned(self) -> Outcome<'static> {
        Outcome {
            uid: self.uid.into_owned(),
            kind: self.kind.into_owned(),
            namespace: self.namespace.map(ReviewStr::into_owned),
            name: self.name.map(ReviewStr::into_owned),
            review: self.review,
            operation: self.operation,
            dry_run: self.dry_run,
            verdict: self.verdict,
            decision: self.decision,
            mode: self.mode,
            override_reason: self.override_reason,
        }
    }
}

/// Reviews one AdmissionReview body.
pub fn review<'a>(body: &'a [u8], endpoint: Endpoint, ctx: &Context<'_>) -> Result<Outcome<'a>, ReviewError> {
    // serde would also accept a JSON array for a struct; an AdmissionReview is an object.
    if body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(ReviewError::NotAnObject);
    }
    match endpoint {
        Endpoint::NodePools => {
            review_as::<NodePool>(body, endpoint, ctx, &|np| evaluate_nodepool(np, ctx.facts))
        }
        Endpoint::HostedClusters => review_as::<HostedCluster>(body, endpoint, ctx, &|hc| {
            evaluate_hostedcluster(hc, ctx.facts, &[])
        }),
    }
}

/// One pass over the body with `object` read straight into `T` (what kube-apiserver sends
/// nearly always: the object was validated against the CRD); anything that does not fit —
/// a malformed review, another kind, an object `T` cannot read — is reviewed again the
/// general way (`object` as raw JSON, typed afterwards with the path of any error), which
/// gives the same answer the fast pass would have, or the error.
fn review_as<'a, T>(
    body: &'a [u8],
    endpoint: Endpoint,
    ctx: &Context<'_>,
    eval: &dyn Fn(&T) -> Report,
) -> Result<Outcome<'a>, ReviewError>
where
    T: DeserializeOwned + kube::Resource,
{
    // UTF-8 checked once for the whole body: serde_json's `from_str` then skips the check it
    // makes for every string it reads (`from_utf8` was ~1.8% of a request's CPU). A body
    // that is not UTF-8 is read as before (`from_slice` does not check the strings it skips).
    let fast = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<AdmissionReview<'_, T>>(text),
        Err(_) => serde_json::from_slice::<AdmissionReview<'_, T>>(body),
    };
    if let Ok(review) = fast {
        return decide_review(review, endpoint, ctx, Ok, eval);
    }
    let review: AdmissionReview<'a> = serde_json::from_slice(body)?;
    decide_review(review, endpoint, ctx, |raw| parse_object(raw, "object"), eval)
}

/// From a parsed review to the outcome; `typed` turns the request's `object` into `T` (or
/// says why it cannot).
fn decide_review<'a, O, T>(
    review: AdmissionReview<'a, O>,
    endpoint: Endpoint,
    ctx: &Context<'_>,
    typed: impl FnOnce(O) -> Result<T, String>,
    eval: &dyn Fn(&T) -> Report,
) -> Result<Outcome<'a>, ReviewError>
where
    T: DeserializeOwned + kube::Resource,
{
    if *review.api_version != *review::API_VERSION {
        return Err(ReviewError::ApiVersion(review.api_version.0.into_owned()));
    }
    if *review.kind != *review::KIND {
        return Err(ReviewError::Kind(review.kind.0.into_owned()));
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
            uid: req.uid.to_string(),
            allowed: true,
            status: None,
            warnings: Vec::new(),
            audit_annotations: Default::default(),
        }),
        uid: req.uid,
        kind: req.kind.kind,
        namespace: req.namespace,
        name: req.name,
        operation: req.operation.as_str(),
        dry_run: req.dry_run.unwrap_or(false),
        verdict: None,
        decision: DecisionKind::Allow,
        mode,
        override_reason: None,
    };
    // DELETE/CONNECT, subresources (status, scale) and opted-out namespaces pass unevaluated.
    let evaluated = matches!(req.operation, Operation::Create | Operation::Update)
        && req.sub_resource.as_deref().is_none_or(|s| s.is_empty())
        && mode != Mode::Off;
    if !evaluated {
        return Ok(outcome);
    }
    if *req.kind.group != *crate::resources::HYPERSHIFT_GROUP || *outcome.kind != *endpoint.kind() {
        let warning = format!(
            "live-migration-guard: {}/{} {} sent to the {} webhook is not evaluated; check the webhook rules",
            &*req.kind.group,
            &*req.kind.version,
            &*outcome.kind,
            endpoint.kind()
        );
        return Ok(warn_only(outcome, warning));
    }
    let object = req
        .object
        .ok_or(ReviewError::MissingObject(req.operation.as_str()))?;
    let new = match typed(object) {
        Ok(new) => new,
        // The API server validated the object against the CRD; if we still cannot read it,
        // we say so and let it through rather than block on our own limitation.
        Err(e) => {
            return Ok(warn_only(
                outcome,
                format!("live-migration-guard: not evaluated: {e}"),
            ));
        }
    };
    let report = eval(&new);
    let requested = policy::Override::from_annotations(new.meta().annotations.as_ref());
    // The old object only matters to a denial (errors it already had do not deny): it is
    // read and evaluated only when this one would be denied for what it has.
    let old = req
        .old_object
        .filter(|_| {
            req.operation == Operation::Update && policy::old_report_matters(ctx.policy, mode, &report)
        })
        .and_then(|raw| serde_json::from_str::<T>(raw.get()).ok())
        .map(|o| eval(&o));
    let decision = policy::decide(ctx.policy, mode, &outcome.uid, &report, old.as_ref(), &requested);
    outcome.verdict = Some(report.verdict);
    outcome.decision = decision.kind;
    outcome.override_reason = decision.override_reason;
    outcome.review = respond(decision.response);
    Ok(outcome)
}

/// Reads a raw object as `T`; the error names the field that did not fit.
fn parse_object<T: DeserializeOwned>(raw: &RawValue, which: &str) -> Result<T, String> {
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
