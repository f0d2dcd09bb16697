//! `admission.k8s.io/v1` AdmissionReview on the wire, as kube-apiserver sends and expects it.
//!
//! The request side borrows from the body and reads `object` either straight into the typed
//! view the rules need (`O` = `NodePool`/`HostedCluster`: one pass over the body) or as raw
//! JSON (`O` = `&RawValue`), and keeps `oldObject` raw until a decision needs it. kube's
//! `AdmissionReview<DynamicObject>` would materialise the whole object as a
//! `serde_json::Value` tree, managedFields and all.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
pub struct AdmissionReview<'a, O = &'a RawValue> {
    #[serde(default, borrow)]
    pub api_version: ReviewStr<'a>,
    #[serde(default, borrow)]
    pub kind: ReviewStr<'a>,
    #[serde(borrow)]
    pub request: Option<AdmissionRequest<'a, O>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
pub struct AdmissionRequest<'a, O = &'a RawValue> {
    #[serde(borrow)]
    pub uid: ReviewStr<'a>,
    #[serde(default, borrow)]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow)]
    pub sub_resource: Option<ReviewStr<'a>>,
    #[serde(borrow)]
    pub name: Option<ReviewStr<'a>>,
    #[serde(borrow)]
    pub namespace: Option<ReviewStr<'a>>,
    pub operation: Operation,
    pub object: Option<O>,
    #[serde(borrow)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    pub group: ReviewStr<'a>,
    #[serde(default, borrow)]
    pub version: ReviewStr<'a>,
    #[serde(default, borrow)]
    pub kind: ReviewStr<'a>,
}

/// A string of the review, borrowed from the body unless JSON escapes made it differ (then
/// unescaped into its own allocation). serde's own `Cow<str>` always allocates inside an
/// `Option`; the request's names and uid are read on every admission.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReviewStr<'a>(pub Cow<'a, str>);

impl ReviewStr<'_> {
    pub fn into_owned(self) -> ReviewStr<'static> {
        ReviewStr(Cow::Owned(self.0.into_owned()))
    }
}

impl std::ops::Deref for ReviewStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ReviewStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ReviewStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ReviewStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ReviewStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(ReviewStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// The response document: echoes `apiVersion`, `kind` and the request `uid`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// `metav1.Status` as carried in `response.status`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub group: &'static str,
    pub kind: &'static str,
    pub causes: Vec<StatusCause>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uid: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":{uid},"kind":{{"group":"hypershift.openshift.io","version":"v1beta1","kind":"NodePool"}},"operation":"CREATE","name":"np","namespace":"clusters"}}}}"#
        )
    }

    #[test]
    fn strings_are_borrowed_from_the_body_unless_escaped() {
        let body = request(r#""705ab4f5-6393-11e8-b7cc-42010a800002""#);
        let review: AdmissionReview<'_> = serde_json::from_str(&body).unwrap();
        let req = review.request.unwrap();
        assert!(matches!(
            req.uid.0,
            Cow::Borrowed("705ab4f5-6393-11e8-b7cc-42010a800002")
        ));
        assert!(matches!(req.kind.kind.0, Cow::Borrowed("NodePool")));
        assert_eq!(req.namespace.as_deref(), Some("clusters"));

        // An escape makes the text differ from the body: it is unescaped, not cut short.
        let body = request(r#""uid-\u0041\"b""#);
        let review: AdmissionReview<'_> = serde_json::from_str(&body).unwrap();
        let uid = review.request.unwrap().uid;
        assert_eq!(&*uid, "uid-A\"b");
        assert!(matches!(uid.0, Cow::Owned(_)));
    }

    #[test]
    fn a_uid_that_is_not_a_string_is_an_error_that_says_so() {
        let err = serde_json::from_str::<AdmissionReview<'_>>(&request("42")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid type: integer `42`, expected a string"),
            "{err}"
        );
    }
}
