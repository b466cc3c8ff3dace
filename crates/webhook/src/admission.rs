//! AdmissionReview `admission.k8s.io/v1` and `v1beta1`: reading a request body and writing the
//! response. Only what injection needs is decoded; the patch is sent base64-encoded, as the
//! Kubernetes API documents `[]byte` fields.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<AdmissionRequest>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The fields of an AdmissionRequest the webhook reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Only the parts injection reads, see [`crate::object_view`].
    #[serde(default, deserialize_with = "crate::object_view::deserialize")]
    pub object: Option<Value>,
    /// On UPDATE, the stored object, to tell an edit of what injection reads from other writes.
    #[serde(default, deserialize_with = "crate::object_view::deserialize")]
    pub old_object: Option<Value>,
}

/// A decoded review: the request, and the apiVersion to answer with.
#[derive(Debug)]
pub struct Review {
    pub api_version: String,
    pub request: AdmissionRequest,
}

/// Why a body is not an AdmissionReview; answered with HTTP 400 and this text.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReviewError {
    #[error("empty request body: expected an AdmissionReview")]
    Empty,
    #[error("failed to decode admission review request: {0}")]
    Decode(String),
    #[error("invalid admission review request: unsupported apiVersion {0:?} (expected admission.k8s.io/v1 or v1beta1)")]
    ApiVersion(String),
    #[error("invalid admission review request: kind is {0:?}, expected AdmissionReview")]
    Kind(String),
    #[error("invalid admission review request: no \"request\"")]
    MissingRequest,
    #[error("invalid admission review request: empty request.uid")]
    EmptyUid,
}

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

pub fn decode(body: &[u8]) -> Result<Review, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    let review: ReviewIn = serde_json::from_slice(body).map_err(|e| ReviewError::Decode(e.to_string()))?;
    if review.api_version != V1 && review.api_version != V1BETA1 {
        return Err(ReviewError::ApiVersion(review.api_version));
    }
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.kind));
    }
    let request = review.request.ok_or(ReviewError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::EmptyUid);
    }
    Ok(Review { api_version: review.api_version, request })
}

/// The webhook's answer to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    /// The serialized JSON patch, if any.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    /// HTTP-like code and message, for a denial.
    pub status: Option<(u16, String)>,
}

impl Answer {
    pub fn allow() -> Self {
        Answer { allowed: true, ..Answer::default() }
    }

    pub fn deny(code: u16, message: impl Into<String>) -> Self {
        Answer { allowed: false, status: Some((code, message.into())), ..Answer::default() }
    }
}

/// The AdmissionReview response body, written directly: the base64 patch, most of the answer,
/// needs no JSON escaping, so it is encoded straight into the output instead of being
/// serialized as a string (which scans it byte by byte).
pub fn encode(api_version: &str, uid: &str, answer: &Answer) -> Vec<u8> {
    let patch_len = answer.patch.as_ref().map_or(0, |p| base64::encoded_len(p.len(), true).unwrap_or(0));
    let mut out = Vec::with_capacity(160 + api_version.len() + uid.len() + patch_len);
    out.extend_from_slice(b"{\"apiVersion\":");
    write_json(&mut out, api_version);
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    write_json(&mut out, uid);
    out.extend_from_slice(if answer.allowed { b",\"allowed\":true" } else { b",\"allowed\":false" });
    if let Some(patch) = &answer.patch {
        out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
        let start = out.len();
        out.resize(start + patch_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(patch, &mut out[start..])
            .expect("the buffer has the encoded length");
        out.truncate(start + written);
        out.push(b'"');
    }
    if !answer.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        write_json(&mut out, &answer.warnings);
    }
    if let Some((code, message)) = &answer.status {
        out.extend_from_slice(format!(",\"status\":{{\"code\":{code},\"message\":").as_bytes());
        write_json(&mut out, message);
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    out
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings always serialize");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_v1_and_v1beta1() {
        for version in [V1, V1BETA1] {
            let body = json!({"apiVersion": version, "kind": "AdmissionReview", "request": {"uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "ns", "operation": "CREATE",
                "dryRun": true, "object": {"kind": "Pod"}, "oldObject": null, "userInfo": {"username": "x"}}});
            let review = decode(body.to_string().as_bytes()).unwrap();
            assert_eq!(review.api_version, version);
            assert_eq!(review.request.kind.kind, "Pod");
            assert_eq!(review.request.dry_run, Some(true));
        }
    }

    #[test]
    fn rejects_what_is_not_a_review() {
        let err = |body: &str| decode(body.as_bytes()).unwrap_err();
        assert_eq!(err(""), ReviewError::Empty);
        assert!(matches!(err("{"), ReviewError::Decode(_)));
        assert!(matches!(err("[1]"), ReviewError::Decode(_)));
        assert_eq!(err(r#"{"apiVersion":"v1","kind":"AdmissionReview"}"#), ReviewError::ApiVersion("v1".into()));
        assert_eq!(err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#), ReviewError::Kind("Pod".into()));
        assert_eq!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            ReviewError::MissingRequest
        );
        assert_eq!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#),
            ReviewError::EmptyUid
        );
        assert!(matches!(
            err(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#),
            ReviewError::Decode(_)
        ));
    }

    #[test]
    fn encodes_patches_as_base64_and_omits_empty_fields() {
        let answer = Answer { allowed: true, patch: Some(b"[]".to_vec()), warnings: vec!["w".into()], status: None };
        let out: Value = serde_json::from_slice(&encode(V1, "u", &answer)).unwrap();
        assert_eq!(
            out,
            json!({"apiVersion": V1, "kind": "AdmissionReview", "response": {"uid": "u", "allowed": true,
                "patchType": "JSONPatch", "patch": "W10=", "warnings": ["w"]}})
        );
        let denied: Value = serde_json::from_slice(&encode(V1BETA1, "u", &Answer::deny(500, "boom"))).unwrap();
        assert_eq!(
            denied["response"],
            json!({"uid": "u", "allowed": false, "status": {"code": 500, "message": "boom"}})
        );
    }
}
