//! URLs as reports show them: credentials in query parameters (object-store signatures) are
//! redacted, upload-session state shortened.

use url::Url;

/// Query parameters that carry credentials (object-store signatures, tokens) are redacted;
/// upload-session state is shortened. Reports, logs and the status page only see this form.
pub fn redact_url(url: &Url) -> String {
    if url.query().is_none() {
        return url.to_string();
    }
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let lk = k.to_ascii_lowercase();
            let secret = [
                "sig",
                "token",
                "credential",
                "secret",
                "key",
                "auth",
                "policy",
                "password",
            ]
            .iter()
            .any(|s| lk.contains(s));
            let v = if secret {
                "REDACTED".to_string()
            } else if lk == "_state" && v.len() > 12 {
                format!("{}…", &v[..12])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signed_url_parameters_and_shortens_upload_state() {
        let u = Url::parse(
            "https://cdn.example/blob?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&Expires=9",
        )
        .expect("valid");
        assert_eq!(
            redact_url(&u),
            "https://cdn.example/blob?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&Expires=9"
        );
        let u = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/1?_state=abcdefghijklmnopqrstuvwxyz&digest=sha256%3Aab").expect("valid");
        assert_eq!(redact_url(&u), "http://127.0.0.1:5000/v2/p/blobs/uploads/1?_state=abcdefghijkl%E2%80%A6&digest=sha256%3Aab");
    }

    #[test]
    fn leaves_a_url_without_query_untouched() {
        let u = Url::parse("http://127.0.0.1:5000/v2/p/manifests/t").expect("valid");
        assert_eq!(redact_url(&u), "http://127.0.0.1:5000/v2/p/manifests/t");
    }

    #[test]
    fn resolves_relative_and_absolute_locations() {
        let base = Url::parse("http://127.0.0.1:5000/v2/p/blobs/uploads/").expect("valid");
        assert_eq!(
            base.join("/v2/p/blobs/uploads/abc?_state=x")
                .expect("joins")
                .as_str(),
            "http://127.0.0.1:5000/v2/p/blobs/uploads/abc?_state=x"
        );
        assert_eq!(
            base.join("https://other:8443/x").expect("joins").as_str(),
            "https://other:8443/x"
        );
    }
}
