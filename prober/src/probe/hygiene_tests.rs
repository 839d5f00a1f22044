//! The tag list: its pages, any bytes of them, read without a panic and back to the tags
//! written; the next page found from any `Link` header without a panic; and a page over its
//! bound, from a real local server, a failed step naming the limit and the URL.

use proptest::prelude::*;
use url::Url;

use super::*;
use crate::config::RawConfig;
use crate::http::response::tests::{serve, Answer, CHUNK, ENDLESS};
use crate::proptests::cases;

fn base() -> Url {
    Url::parse("http://127.0.0.1:5000/v2/p/tags/list?n=1000").expect("a URL")
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_page_is_read_or_refused_without_a_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_tag_list(&body);
    }

    #[test]
    fn a_page_reads_back_to_the_tags_written(
        tags in proptest::option::of(proptest::collection::vec(any::<String>(), 0..8)),
        name in any::<String>(),
    ) {
        let body = serde_json::json!({ "name": name, "tags": tags }).to_string();
        prop_assert_eq!(parse_tag_list(body.as_bytes()).ok(), Some(tags.unwrap_or_default()));
    }

    #[test]
    fn any_link_header_is_read_without_a_panic(link in any::<String>()) {
        let _ = next_page(Some(&link), &base());
    }

    #[test]
    fn a_next_link_leads_to_its_target_and_no_other_link_does(
        target in prop_oneof![
            "/v2/p/tags/list\\?n=[0-9]{1,4}&last=[a-z0-9._-]{1,20}",
            "https://[a-z]{1,8}\\.example/v2/p/tags/list\\?last=[a-z]{1,5}",
        ],
        rel in prop::sample::select(vec![r#"rel="next""#, "rel=next", r#"rel="prev""#, "", "title=next"]),
        spaces in prop::sample::select(vec!["", " ", "  "]),
    ) {
        let link = format!("{spaces}<{target}>{spaces};{spaces}{rel}");
        let got = next_page(Some(&link), &base());
        let want = matches!(rel, r#"rel="next""# | "rel=next").then(|| base().join(&target).expect("joins"));
        prop_assert_eq!(got, want);
    }
}

#[tokio::test]
async fn a_tag_list_page_over_its_bound_fails_the_step_naming_the_limit_and_the_url() {
    let (addr, _) = serve(|target| Answer {
        status: 200,
        headers: Vec::new(),
        body: if target.starts_with("/v2/p/tags/list") {
            ENDLESS
        } else {
            0
        },
    })
    .await;
    let yaml = format!(
        "targets:\n  - name: t\n    registry: http://{addr}\n    repository: p\n    sizes:\n      - {{class: small, layer_sizes: [4KiB]}}\n"
    );
    let config = RawConfig::from_yaml(&yaml)
        .expect("parses")
        .validate()
        .expect("valid");
    let prober = Prober::new(config.targets.into_iter().next().expect("a target"));
    let report = prober.sweep().await;
    assert_eq!(
        report.errors,
        [format!(
            "list_tags (p): GET http://{addr}/v2/p/tags/list?n=1000: tag list page over its \
             limit of 4194304 bytes, not read further"
        )]
    );
    let step = report
        .steps
        .iter()
        .find(|s| s.step == Step::ListTags)
        .expect("a list_tags step");
    let received = step.requests.last().expect("a request").bytes_received;
    assert!(
        received > TAG_LIST_BODY.bytes as u64 && received <= (TAG_LIST_BODY.bytes + CHUNK) as u64,
        "read {received} bytes"
    );
}
