//! Finding S3 links, shared by the stock link-discovery plugins and open to
//! site plugins. Every link-discovery plugin returns the same output shape:
//! `{"links": ["s3://bucket/key", ...]}` (see [`LinksOutput`]).

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
        let Some(slash) = rest.find('/') else { continue };
        let bucket = &rest[..slash];
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let bucket_ok = bucket.len() >= 3
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && alnum(bucket.chars().next())
            && alnum(bucket.chars().last());
        if !bucket_ok {
            continue;
        }
        let key_and_more = &rest[slash + 1..];
        let key_len = key_and_more.find([',', ':', ' ', '\t']).unwrap_or(key_and_more.len());
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
        assert_eq!(kernel_parameter_urls(p), vec!["s3://boot-images/k8s/0.5.8/rootfs", "s3://boot-images/abc/rootfs"]);
    }

    #[test]
    fn needs_a_separator_before_and_a_valid_bucket() {
        assert!(kernel_parameter_urls("s3://boot-images/x").is_empty());
        assert!(kernel_parameter_urls("a s3://boot-images/x").is_empty());
        assert!(kernel_parameter_urls("a=s3://Bo/x").is_empty());
        assert_eq!(kernel_parameter_urls("a=s3://ims/x\tb"), vec!["s3://ims/x"]);
    }
}
