//! S3 URLs, object heads, ETags and part sizes.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `s3://bucket/key` split into bucket and key, both non-empty.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// `s3://bucket/key` as an import may write it: the bucket follows S3's
/// naming rules and the key the rules of archive member paths (the normal
/// form, no control characters, no backslash, no dot segments), and holds
/// no percent-escape, which a client could decode into `/` or `..`. The
/// error says what is wrong, for a message that names the URL.
pub fn check_url(url: &str) -> Result<(&str, &str), String> {
    let (bucket, key) = split_url(url).ok_or("not an S3 URL (s3://bucket/key)")?;
    if let Some(why) = bucket_problem(bucket) {
        return Err(format!("bucket {bucket:?} {why}"));
    }
    if let Some(why) = key_problem(key) {
        return Err(format!("key {key:?} {why}"));
    }
    Ok((bucket, key))
}

/// S3's bucket naming rules: 3 to 63 characters of `a-z`, `0-9`, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IPv4
/// address.
fn bucket_problem(bucket: &str) -> Option<&'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Some("is not 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Some("holds characters other than a-z, 0-9, `.` and `-`");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bucket.as_bytes()[0]) || !alnum(bucket.as_bytes()[bucket.len() - 1]) {
        return Some("does not start and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return Some("holds `..`, `.-` or `-.`");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("is an IP address");
    }
    None
}

/// S3's longest key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

fn key_problem(key: &str) -> Option<&'static str> {
    if key.len() > MAX_KEY_BYTES {
        return Some("is longer than S3's 1024 bytes");
    }
    if crate::archive::normalize_member_path(key).as_deref() != Some(key) {
        return Some(
            "is not a plain relative path (it has `..`, `.` or empty segments, a leading or trailing `/`, a backslash or control characters)",
        );
    }
    let escaped = key
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    if escaped {
        return Some(
            "holds a percent-escape (such as `%2F`), which would name another key once decoded",
        );
    }
    None
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
    etag_part_count(etag).filter(|&n| (1..=MAX_PARTS).contains(&n))
}

/// The `N` of an ETag shaped `<32 hex md5>-N`, whatever its value.
fn etag_part_count(etag: &str) -> Option<u64> {
    let etag = bare_etag(etag);
    let (md5, parts) = etag.rsplit_once('-')?;
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    parts.parse().ok()
}

const MIB: u64 = 1 << 20;
/// S3's multipart limits: every part but the last at least 5 MiB, no part
/// over 5 GiB, at most 10,000 parts.
pub const MIN_PART: u64 = 5 * MIB;
pub const MAX_PART: u64 = 5 << 30;
pub const MAX_PARTS: u64 = 10_000;

/// Why S3 cannot complete an upload of `size` bytes in parts of `part_size`.
pub fn part_size_problem(size: u64, part_size: u64) -> Option<String> {
    let parts = size.div_ceil(part_size.max(1)).max(1);
    if parts > 1 && part_size < MIN_PART {
        Some(format!(
            "'part_size' {part_size} cuts {size} bytes into {parts} parts of less than S3's minimum of 5 MiB"
        ))
    } else if part_size.min(size) > MAX_PART {
        Some(format!(
            "'part_size' {part_size} is over S3's largest part of 5 GiB"
        ))
    } else if parts > MAX_PARTS {
        Some(format!(
            "'part_size' {part_size} cuts {size} bytes into {parts} parts, over S3's 10,000"
        ))
    } else {
        None
    }
}

/// Why no multipart upload of `size` bytes has the ETag `<md5>-N`: N out of
/// S3's 1 to 10,000 parts, or parts (but the last) under 5 MiB or over 5 GiB.
pub fn etag_parts_problem(etag: &str, size: u64) -> Option<String> {
    let parts = etag_part_count(etag)?;
    let why = if !(1..=MAX_PARTS).contains(&parts) {
        "S3 makes 1 to 10,000 parts"
    } else if parts > 1 && size < (parts - 1) * MIN_PART {
        "its parts but the last would be under S3's minimum of 5 MiB"
    } else if size > parts * MAX_PART {
        "its parts would be over S3's largest of 5 GiB"
    } else {
        return None;
    };
    Some(format!(
        "ETag {} says {parts} parts for {size} bytes, which S3 cannot have made: {why}",
        bare_etag(etag)
    ))
}

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
    fn urls_an_import_writes_follow_s3s_bucket_rules_and_the_member_path_rules() {
        assert_eq!(
            check_url("s3://boot-images/3fa85f64/rootfs"),
            Ok(("boot-images", "3fa85f64/rootfs"))
        );
        for (url, why) in [
            ("s3://../x", "bucket \"..\" is not 3 to 63"),
            ("s3://a..b/x", "holds `..`"),
            ("s3://Boot_Images/x", "characters other than"),
            ("s3://-ims/x", "does not start and end"),
            ("s3://10.0.0.1/x", "is an IP address"),
            ("s3://ims/a/../../b", "not a plain relative path"),
            ("s3://ims/a/./b", "not a plain relative path"),
            ("s3://ims/a//b", "not a plain relative path"),
            ("s3://ims/a\r\nb", "not a plain relative path"),
            ("s3://ims/a%2F..%2Fb", "percent-escape"),
            ("s3://ims/a%2e%2e", "percent-escape"),
            ("http://ims/x", "not an S3 URL"),
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        assert!(check_url(&format!("s3://ims/{}", "k".repeat(1025))).is_err());
    }

    #[test]
    fn part_sizes_s3_cannot_complete_are_named() {
        assert!(
            part_size_problem(10 * MIB, 1)
                .unwrap()
                .contains("minimum of 5 MiB")
        );
        assert!(part_size_problem(100 * MIB, 4 * MIB).is_some());
        assert!(
            part_size_problem(60_000 * MIB, 5 * MIB)
                .unwrap()
                .contains("10,000")
        );
        assert!(
            part_size_problem(6 << 30, 6 << 30)
                .unwrap()
                .contains("5 GiB")
        );
        // The last part may be smaller, and a single part may be small.
        assert_eq!(part_size_problem(8 * MIB + 1, 8 * MIB), None);
        assert_eq!(part_size_problem(1, 1), None);
        assert_eq!(part_size_problem(3 * MIB, 8 * MIB), None);
    }

    #[test]
    fn multipart_etags_s3_cannot_have_made_are_named() {
        let etag = |n: u64| format!("\"{MD5}-{n}\"");
        // 3 parts of at least 5 MiB but the last: at least 10 MiB.
        assert!(
            etag_parts_problem(&etag(3), 9 * MIB)
                .unwrap()
                .contains("under")
        );
        assert_eq!(etag_parts_problem(&etag(3), 10 * MIB + 1), None);
        assert!(
            etag_parts_problem(&etag(10_001), 1 << 40)
                .unwrap()
                .contains("10,000")
        );
        assert!(etag_parts_problem(&etag(0), 10).is_some());
        assert!(
            etag_parts_problem(&etag(2), 11 << 30)
                .unwrap()
                .contains("5 GiB")
        );
        assert_eq!(etag_parts_problem(&etag(1), 10), None);
        assert_eq!(etag_parts_problem(MD5, 10), None, "single-part");
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
