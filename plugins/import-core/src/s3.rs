//! S3 URLs, object heads, ETags and part sizes.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `s3://bucket/key` split into bucket and key, both non-empty.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// What a HEAD of an object answered (the WIT `object-head`, as data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub accept_ranges: Option<String>,
}

/// An ETag without the quotes S3 puts around it, lower-cased.
pub fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

/// The part count of a multipart ETag (`<32 hex md5>-N`), or `None` for a
/// single-part ETag.
pub fn multipart_parts(etag: &str) -> Option<u64> {
    let etag = bare_etag(etag);
    let (md5, parts) = etag.rsplit_once('-')?;
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    parts.parse().ok().filter(|&n| (1..=10_000).contains(&n))
}

const MIB: u64 = 1 << 20;

/// Part sizes tried first, in this order: boto3's and the AWS CLI's 8 MiB,
/// S3's minimum 5 MiB, then 16, 15 and 64 MiB (common tool defaults).
pub const COMMON_PART_SIZES_MIB: [u64; 5] = [8, 5, 16, 15, 64];

/// The part size that reproduces a multipart ETag `<md5>-N` for an object of
/// `size` bytes: the first of [`COMMON_PART_SIZES_MIB`], then of the other
/// whole MiB sizes from 5 MiB to 5 GiB (S3's part size limits), that cuts
/// `size` into exactly N parts. `None` for a single-part ETag (a single PUT
/// reproduces it) and when no such size exists.
pub fn part_size_for_etag(etag: &str, size: u64) -> Option<u64> {
    let parts = multipart_parts(etag)?;
    let others = (5..=5 * 1024).filter(|m| !COMMON_PART_SIZES_MIB.contains(m));
    COMMON_PART_SIZES_MIB
        .into_iter()
        .chain(others)
        .map(|m| m * MIB)
        .find(|&part| size.div_ceil(part) == parts || (size == 0 && parts == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(
            split_url("s3://boot-images/a/b/manifest.json"),
            Some(("boot-images", "a/b/manifest.json"))
        );
        assert_eq!(split_url("s3://ims/"), None);
        assert_eq!(split_url("s3:///key"), None);
        assert_eq!(split_url("http://ims/key"), None);
    }

    #[test]
    fn single_part_etags_need_no_part_size() {
        assert_eq!(multipart_parts(MD5), None);
        assert_eq!(part_size_for_etag(&format!("\"{MD5}\""), 100 * MIB), None);
    }

    #[test]
    fn multipart_etags_are_recognised_with_or_without_quotes() {
        assert_eq!(multipart_parts(&format!("\"{MD5}-257\"")), Some(257));
        assert_eq!(multipart_parts("abc-3"), None, "not an md5");
        assert_eq!(multipart_parts(&format!("{MD5}-0")), None);
    }

    /// HPE re-uploads with the CLI's default chunking and changes ETags; the
    /// part size must give exactly the recorded part count.
    #[test]
    fn the_part_size_reproduces_the_part_count() {
        let etag = |n: u64| format!("{MD5}-{n}");
        // 8 MiB first: 20 MiB in 3 parts.
        assert_eq!(part_size_for_etag(&etag(3), 20 * MIB), Some(8 * MIB));
        // 12 MiB in 3 parts: 8 MiB gives 2, 5 MiB gives 3.
        assert_eq!(part_size_for_etag(&etag(3), 12 * MIB), Some(5 * MIB));
        // 20 MiB in 2 parts: 8 -> 3, 5 -> 4, 16 -> 2.
        assert_eq!(part_size_for_etag(&etag(2), 20 * MIB), Some(16 * MIB));
        // 75 MiB in 5 parts: 8 -> 10, 5 -> 15, 16 -> 5.
        assert_eq!(part_size_for_etag(&etag(5), 75 * MIB), Some(16 * MIB));
        // 150 MiB in 10 parts: 8 -> 19, 5 -> 30, 16 -> 10.
        assert_eq!(part_size_for_etag(&etag(10), 150 * MIB), Some(16 * MIB));
        // 45 MiB in 3 parts: 8 -> 6, 5 -> 9, 16 -> 3.
        assert_eq!(part_size_for_etag(&etag(3), 45 * MIB), Some(16 * MIB));
        // 44 MiB in 3 parts: 8 -> 6, 5 -> 9, 16 -> 3 (16+16+12).
        assert_eq!(part_size_for_etag(&etag(3), 44 * MIB), Some(16 * MIB));
        // 200 MiB in 4 parts: 8 -> 25, 5 -> 40, 16 -> 13, 15 -> 14, 64 -> 4.
        assert_eq!(part_size_for_etag(&etag(4), 200 * MIB), Some(64 * MIB));
        // 70 MiB in 7 parts: none of the common sizes; 10 MiB is the first other one.
        assert_eq!(part_size_for_etag(&etag(7), 70 * MIB), Some(10 * MIB));
        // A multipart upload of one part: 3 MiB fits in one 8 MiB part.
        assert_eq!(part_size_for_etag(&etag(1), 3 * MIB), Some(8 * MIB));
        // 15 MiB + 1 byte in 2 parts: 8 MiB gives 2.
        assert_eq!(part_size_for_etag(&etag(2), 15 * MIB + 1), Some(8 * MIB));
        // Impossible: 10 bytes in 3 parts.
        assert_eq!(part_size_for_etag(&etag(3), 10), None);
    }
}
