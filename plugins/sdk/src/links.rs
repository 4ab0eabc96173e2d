//! Finding S3 links, shared by the stock link-discovery plugins and open to
//! site plugins. Every link-discovery plugin returns the same output shape:
//! `{"links": ["s3://bucket/key", ...]}` (see [`LinksOutput`]).
//!
//! A site link source is one function, `fn links(host: &impl Host, with: W)
//! -> Result<Vec<Link>, StepError>`, made a plugin by [`link_source!`](crate::link_source).

use crate::host::Host;
use crate::{StepError, StepOutput};

/// An S3 URL, `s3://bucket/key`.
pub type Link = String;

/// The output every link-discovery plugin returns; the export planner reads
/// `links` from each source (a skipped source is `null`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LinksOutput {
    /// S3 URLs in first-seen order, without duplicates. Existence is checked
    /// later, by the planner.
    pub links: Vec<String>,
}

impl LinksOutput {
    /// Adds a URL unless it is already there.
    pub fn add(&mut self, url: impl Into<String>) {
        let url = url.into();
        if !self.links.contains(&url) {
            self.links.push(url);
        }
    }
}

fn bucket_ok(bucket: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    bucket.len() >= 3
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && alnum(bucket.chars().next())
        && alnum(bucket.chars().last())
}

/// `text` when it is one S3 URL by the stock rule (a bucket of 3+ chars of
/// `[a-z0-9.-]` starting and ending alphanumeric, a key of 1-1024 chars
/// without `,` `:` space or tab), as a boot set's `path` is.
pub fn s3_url(text: &str) -> Option<Link> {
    let rest = text.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    let key_ok = !key.is_empty() && key.len() <= 1024 && !key.contains([',', ':', ' ', '\t']);
    (bucket_ok(bucket) && key_ok).then(|| text.to_string())
}

/// The S3 URLs of a string field: the string itself when it is a URL, else
/// the URLs inside it read as kernel parameters.
pub fn urls_in(text: &str) -> Vec<Link> {
    match s3_url(text) {
        Some(url) => vec![url],
        None => kernel_parameter_urls(text),
    }
}

/// Removes repeats, keeping the first of each in order.
pub fn dedupe(links: impl IntoIterator<Item = Link>) -> Vec<Link> {
    let mut out = LinksOutput::default();
    links.into_iter().for_each(|l| out.add(l));
    out.links
}

/// What [`link_source!`](crate::link_source) runs: decodes `with`, calls the
/// link function with the real host, dedupes, and returns [`LinksOutput`].
#[doc(hidden)]
pub fn run_link_source<H: Host, W: serde::de::DeserializeOwned>(
    host: &H,
    input: &str,
    links: impl FnOnce(&H, W) -> Result<Vec<Link>, StepError>,
) -> Result<StepOutput, StepError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        with: serde_json::Value,
    }
    let env: Envelope = serde_json::from_str(input)
        .map_err(|e| StepError::InvalidInput(format!("input is not a step envelope: {e}")))?;
    let with = serde_json::from_value(env.with)
        .map_err(|e| StepError::InvalidInput(format!("`with`: {e}")))?;
    let out = LinksOutput {
        links: dedupe(links(host, with)?),
    };
    Ok(crate::output(&out, vec![]))
}

/// S3 URLs inside a kernel command line, by HPE's rule: preceded by `,` `:`
/// or `=`; `s3://`; a bucket of 3+ chars of `[a-z0-9.-]` starting and ending
/// alphanumeric; `/`; a key of 1-1024 chars without `,` `:` space or tab;
/// followed by the end or one of `,` `:` space tab. De-duplicated, in order.
pub fn kernel_parameter_urls(params: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = params.as_bytes();
    let mut search = 0;
    while let Some(found) = params[search..].find("s3://") {
        let start = search + found;
        search = start + 5;
        if start == 0 || !matches!(bytes[start - 1], b',' | b':' | b'=') {
            continue;
        }
        let rest = &params[start + 5..];
        let Some(slash) = rest.find('/') else {
            continue;
        };
        let bucket = &rest[..slash];
        if !bucket_ok(bucket) {
            continue;
        }
        let key_and_more = &rest[slash + 1..];
        let key_len = key_and_more
            .find([',', ':', ' ', '\t'])
            .unwrap_or(key_and_more.len());
        if key_len == 0 || key_len > 1024 {
            continue;
        }
        let url = format!("s3://{bucket}/{}", &key_and_more[..key_len]);
        search = start + 5 + slash + 1 + key_len;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpe_examples() {
        let p = "console=ttyS0 metal.server=s3://boot-images/k8s/0.5.8/rootfs root=craycps-s3:s3://boot-images/abc/rootfs:etag1:dvs:x nmd_data=url=s3://boot-images/abc/rootfs,etag=e";
        assert_eq!(
            kernel_parameter_urls(p),
            vec![
                "s3://boot-images/k8s/0.5.8/rootfs",
                "s3://boot-images/abc/rootfs"
            ]
        );
    }

    #[test]
    fn whole_urls_and_dedupe() {
        assert_eq!(
            s3_url("s3://boot-images/k/rootfs").as_deref(),
            Some("s3://boot-images/k/rootfs")
        );
        assert_eq!(s3_url("s3://Boot/k"), None);
        assert_eq!(s3_url("s3://boot-images/"), None);
        assert_eq!(s3_url("http://x/y"), None);
        assert_eq!(urls_in("a=s3://ims/x b"), vec!["s3://ims/x"]);
        let d = dedupe([
            "s3://a1/x".to_string(),
            "s3://b1/y".into(),
            "s3://a1/x".into(),
        ]);
        assert_eq!(d, vec!["s3://a1/x", "s3://b1/y"]);
    }

    #[test]
    fn a_link_source_runs_over_a_fake_host() {
        use crate::host::FakeHost;
        fn links(host: &impl Host, with: serde_json::Value) -> Result<Vec<Link>, StepError> {
            let path = with["path"].as_str().unwrap_or("v1/things");
            let mut out = vec![];
            for t in host.get_json_list("things", path)? {
                out.extend(urls_in(t["url"].as_str().unwrap_or("")));
            }
            Ok(out)
        }
        let host = FakeHost::new().service_json(
            "things",
            "v1/things",
            serde_json::json!([{"url": "s3://boot-images/a"}, {"url": "x=s3://boot-images/a y"}, {}]),
        );
        let out = run_link_source(&host, r#"{"with": {}}"#, links).unwrap();
        assert_eq!(out.output, r#"{"links":["s3://boot-images/a"]}"#);
        assert_eq!(host.requests(), vec!["GET things v1/things"]);
        let err = run_link_source(&host, r#"{"with": {"path": "v2/things"}}"#, links).unwrap_err();
        assert!(matches!(err, StepError::Failed(m) if m.contains("HTTP 404")));
        let denied = run_link_source(&FakeHost::new(), r#"{"with": null}"#, links).unwrap_err();
        assert!(matches!(denied, StepError::Denied(_)));
    }

    #[test]
    fn needs_a_separator_before_and_a_valid_bucket() {
        assert!(kernel_parameter_urls("s3://boot-images/x").is_empty());
        assert!(kernel_parameter_urls("a s3://boot-images/x").is_empty());
        assert!(kernel_parameter_urls("a=s3://Bo/x").is_empty());
        assert_eq!(kernel_parameter_urls("a=s3://ims/x\tb"), vec!["s3://ims/x"]);
    }
}
