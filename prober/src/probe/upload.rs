//! How bytes get into an upload session, for the push path and the mount's fallback: the
//! body of a blob, PATCHing it whole (as docker does) or in chunks, and the closing PUT with
//! the digest; every answer checked, tolerated deviations noted.

use http::header;
use http::{Method, StatusCode};
use url::Url;

use super::run::Call;
use super::verify;
use crate::http::{BodySource, Request};
use crate::oci::digest::Digest;
use crate::oci::image::{BlobKind, BlobRef, Image};
use crate::outcome::{Failure, Reason};

/// What some registries answer a PATCH with instead of the 202 the spec gives, which clients
/// tolerate.
const PATCH_TOLERATED: &[StatusCode] = &[StatusCode::OK, StatusCode::NO_CONTENT];

/// Registries may require a minimum chunk size (OCI-Chunk-Min-Length on the POST answer).
pub(super) const CHUNK_MIN_LENGTH: &str = "oci-chunk-min-length";

/// What to send for a blob: the config bytes, or a layer regenerated from its seed.
pub(super) fn blob_body(image: &Image, blob: &BlobRef) -> BodySource {
    match blob.kind {
        BlobKind::Config => BodySource::Bytes(image.config.clone()),
        BlobKind::Layer(i) => {
            let layer = image.layers[i].clone();
            let size = layer.size;
            BodySource::Layer {
                layer,
                range: 0..size,
            }
        }
    }
}

/// PATCH the blob in chunks; each 202 answer carries the Location for the next request and the
/// Range the registry holds so far, which must be exactly what was sent.
pub(super) async fn upload_chunks(
    call: &mut Call<'_>,
    location: &mut Url,
    body: &BodySource,
    chunk: u64,
) -> Result<(), Failure> {
    let size = body.len();
    let mut offset = 0;
    while offset < size {
        let end = (offset + chunk).min(size);
        let req = Request::new(Method::PATCH, location.clone())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, &format!("{}-{}", offset, end - 1))
            .body(body.slice(offset..end));
        let resp = call
            .fetch_spec(
                &req,
                StatusCode::ACCEPTED,
                PATCH_TOLERATED,
                Reason::BlobUploadUnknown,
            )
            .await?;
        call.tolerate(verify::upload_range(&resp, end));
        *location = resp.location()?;
        call.discard(resp).await?;
        offset = end;
    }
    Ok(())
}

/// PATCH the whole blob into the session, as docker, containerd and skopeo do: no
/// Content-Range; the 202 answer carries the Location to close, and the Range the registry holds
/// (when it says) must be the whole blob.
pub(super) async fn upload_whole(
    call: &mut Call<'_>,
    location: &mut Url,
    body: &BodySource,
) -> Result<(), Failure> {
    let req = Request::new(Method::PATCH, location.clone())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body.clone());
    let resp = call
        .fetch_spec(
            &req,
            StatusCode::ACCEPTED,
            PATCH_TOLERATED,
            Reason::BlobUploadUnknown,
        )
        .await?;
    if body.len() > 0 {
        call.tolerate(verify::upload_range(&resp, body.len()));
    }
    *location = resp.location()?;
    call.discard(resp).await
}

/// Closes an upload session: `PUT <location>?digest=<digest>` with the rest of the blob (all
/// of it for a monolithic upload, nothing after chunks), answered 201 with our digest.
pub(super) async fn close_upload(
    call: &mut Call<'_>,
    location: Url,
    digest: &Digest,
    body: BodySource,
) -> Result<(), Failure> {
    let req = Request::new(Method::PUT, closing_url(location, digest))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    put_created(call, &req, Reason::BlobUploadUnknown, digest).await
}

/// The session's Location with `digest=<digest>` added to whatever query it carries (the
/// session's state, a signature).
fn closing_url(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());
    location
}

/// The closing PUT of a blob or the manifest PUT: 201 Created, and the registry's
/// Docker-Content-Digest (when sent) must name what was pushed.
pub(super) async fn put_created(
    call: &mut Call<'_>,
    req: &Request,
    not_found: Reason,
    digest: &Digest,
) -> Result<(), Failure> {
    put_created_saying(call, req, not_found, digest, OCI_SUBJECT)
        .await
        .map(|_| ())
}

/// The answer header by which a registry says it indexed a manifest's subject for the
/// referrers API (distribution-spec, "Pushing Manifests with Subject").
pub(super) const OCI_SUBJECT: &str = "oci-subject";

/// `put_created`, keeping the answer's header `name` (as text, when it sent one).
pub(super) async fn put_created_saying(
    call: &mut Call<'_>,
    req: &Request,
    not_found: Reason,
    digest: &Digest,
    name: &str,
) -> Result<Option<String>, Failure> {
    let resp = call
        .fetch_spec(req, StatusCode::CREATED, &[StatusCode::OK], not_found)
        .await?;
    verify::digest_header(&resp, digest)?;
    let said = resp.header(name).map(str::to_string);
    call.discard(resp).await?;
    Ok(said)
}

pub(super) fn chunk_min_length(value: Option<&str>) -> u64 {
    value.and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(crate::proptests::cases(256))]

        /// Whatever query a session's Location carries, the closing PUT keeps it and adds the
        /// digest once.
        #[test]
        fn the_closing_url_keeps_the_sessions_query_and_adds_the_digest(
            pairs in proptest::collection::vec((".{0,8}", ".{0,12}"), 0..4),
            hash in proptest::prelude::any::<[u8; 32]>(),
            min_chunk in ".{0,12}",
        ) {
            let mut location = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/u").expect("a URL");
            if !pairs.is_empty() {
                location.query_pairs_mut().extend_pairs(&pairs);
            }
            let digest = Digest::from_sha256(hash);
            let url = closing_url(location.clone(), &digest);
            let mut want = pairs.clone();
            want.push(("digest".to_owned(), digest.to_string()));
            let got: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(url.path(), location.path());
            // The chunk minimum, any text of it, is a number or none.
            let _ = chunk_min_length(Some(&min_chunk));
        }
    }

    #[test]
    fn reads_the_chunk_minimum_and_ignores_garbage() {
        assert_eq!(chunk_min_length(Some("5242880")), 5_242_880);
        assert_eq!(chunk_min_length(Some("lots")), 0);
        assert_eq!(chunk_min_length(None), 0);
    }
}
