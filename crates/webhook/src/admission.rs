//! AdmissionReview `admission.k8s.io/v1` and `v1beta1`: reading a request body and writing the
//! response. Only what injection needs is decoded; the patch is sent base64-encoded, as the
//! Kubernetes API documents `[]byte` fields.

use serde::Serialize;
use serde_json::Value;

use crate::json_reader::{JsonError, Reader};
use crate::object_view;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// The fields of an AdmissionRequest the webhook reads.
#[derive(Debug, Clone, Default)]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: Option<bool>,
    /// Only the parts injection reads, see [`crate::object_view`].
    pub object: Option<Value>,
    /// On UPDATE, the stored object, to tell an edit of what injection reads from other writes.
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
    let (api_version, kind, request) = read_review(body).map_err(|e| ReviewError::Decode(e.to_string()))?;
    if api_version != V1 && api_version != V1BETA1 {
        return Err(ReviewError::ApiVersion(api_version));
    }
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind));
    }
    let request = request.ok_or(ReviewError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::EmptyUid);
    }
    Ok(Review { api_version, request })
}

/// The review's apiVersion, kind and request, each field read once: a second one is an error,
/// as is a missing `request.uid`; fields the webhook does not read are checked and skipped.
fn read_review(body: &[u8]) -> Result<(String, String, Option<AdmissionRequest>), JsonError> {
    let mut reader = Reader::new(body)?;
    let (mut api_version, mut kind, mut request) = (None, None, None);
    reader.object(|reader, key| match &*key {
        "apiVersion" => once(reader, "apiVersion", &mut api_version, string),
        "kind" => once(reader, "kind", &mut kind, string),
        "request" => once(reader, "request", &mut request, |reader| {
            if reader.null()? { Ok(None) } else { read_request(reader).map(Some) }
        }),
        _ => reader.skip(),
    })?;
    reader.finish()?;
    Ok((api_version.unwrap_or_default(), kind.unwrap_or_default(), request.flatten()))
}

fn read_request(reader: &mut Reader<'_>) -> Result<AdmissionRequest, JsonError> {
    let (mut uid, mut kind, mut namespace, mut name, mut operation) = (None, None, None, None, None);
    let (mut dry_run, mut object, mut old_object) = (None, None, None);
    reader.object(|reader, key| match &*key {
        "uid" => once(reader, "request.uid", &mut uid, string),
        "kind" => once(reader, "request.kind", &mut kind, read_kind),
        "namespace" => once(reader, "request.namespace", &mut namespace, string),
        "name" => once(reader, "request.name", &mut name, string),
        "operation" => once(reader, "request.operation", &mut operation, string),
        "dryRun" => once(reader, "request.dryRun", &mut dry_run, |reader| {
            if reader.null()? { Ok(None) } else { reader.bool().map(Some) }
        }),
        "object" => once(reader, "request.object", &mut object, read_object),
        "oldObject" => once(reader, "request.oldObject", &mut old_object, read_object),
        _ => reader.skip(),
    })?;
    Ok(AdmissionRequest {
        uid: uid.ok_or_else(|| reader.error("missing field request.uid"))?,
        kind: kind.unwrap_or_default(),
        namespace: namespace.unwrap_or_default(),
        name: name.unwrap_or_default(),
        operation: operation.unwrap_or_default(),
        dry_run: dry_run.flatten(),
        object: object.flatten(),
        old_object: old_object.flatten(),
    })
}

fn read_kind(reader: &mut Reader<'_>) -> Result<GroupVersionKind, JsonError> {
    let (mut group, mut version, mut kind) = (None, None, None);
    reader.object(|reader, key| match &*key {
        "group" => once(reader, "request.kind.group", &mut group, string),
        "version" => once(reader, "request.kind.version", &mut version, string),
        "kind" => once(reader, "request.kind.kind", &mut kind, string),
        _ => reader.skip(),
    })?;
    Ok(GroupVersionKind {
        group: group.unwrap_or_default(),
        version: version.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
    })
}

/// The admitted object as injection reads it, or `None` for `null`.
fn read_object(reader: &mut Reader<'_>) -> Result<Option<Value>, JsonError> {
    let value = object_view::read(reader, object_view::Level::Object)?;
    Ok((!value.is_null()).then_some(value))
}

fn string(reader: &mut Reader<'_>) -> Result<String, JsonError> {
    reader.string().map(|s| s.into_owned())
}

/// Reads a field into its slot, which a second field of the same name may not overwrite.
fn once<'a, T>(
    reader: &mut Reader<'a>,
    path: &str,
    slot: &mut Option<T>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, JsonError>,
) -> Result<(), JsonError> {
    if slot.is_some() {
        return Err(reader.error(format!("duplicate field {path}")));
    }
    *slot = Some(read(reader).map_err(|e| e.in_field(path))?);
    Ok(())
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
    let patch_len = answer.patch.as_ref().map_or(0, |p| base64_simd::STANDARD.encoded_length(p.len()));
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
        let written = base64_simd::STANDARD.encode(patch, base64_simd::Out::from_slice(&mut out[start..])).len();
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
