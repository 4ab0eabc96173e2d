//! `imsflow verify`: re-reads an export archive (tar or directory) and checks
//! every artifact `export.json` lists: its member exists under `s3_artifacts/`,
//! has the recorded size, and its bytes reproduce what the export recorded:
//! the sha256 (imsflow's archives) and the S3 ETag (every archive, HPE's
//! included, which carry no sha256: see `EtagCheck`).
//!
//! The index is parsed once, as a stream: each artifact entry is checked as
//! it is read and then dropped, everything else is skipped without being
//! kept, and nesting deeper than serde_json's limit (128) is refused with an
//! error, so neither a huge nor a deeply nested index can exhaust memory or
//! the stack. Every name printed is escaped (`archive::escaped`).
use crate::archive::{ArchiveError, ArchiveReader, escaped, normalize_member_path};
use md5::Md5;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub artifacts: usize,
    /// Artifacts whose bytes matched a recorded sha256.
    pub sha256_verified: usize,
    /// Artifacts whose bytes reproduced their S3 ETag.
    pub etag_verified: usize,
    /// Artifacts without problems that neither hash could check: only their
    /// presence and (when recorded) their size were checked.
    pub size_only: usize,
    pub bytes_read: u64,
    /// Per artifact, in index order: what could be checked.
    pub checks: Vec<ArtifactCheck>,
    pub problems: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct ArtifactCheck {
    pub url: String,
    /// What the member was found to match: `size`, `sha256`, `etag`.
    pub checked: Vec<&'static str>,
    /// No problem was found.
    pub ok: bool,
}

const INDEX: &str = "export.json";
/// Largest `export.json` read.
const MAX_INDEX: u64 = 1 << 30;
/// Where exports put artifacts; HPE's import reads them from there only.
const ARTIFACTS_DIR: &str = "s3_artifacts/";

pub fn verify(path: &Path) -> Result<VerifyReport, ArchiveError> {
    let reader = ArchiveReader::open(path)?;
    let mut report = VerifyReport::default();
    let Some(index) = reader.member(INDEX) else {
        report
            .problems
            .push(ArchiveError::NoMember(INDEX.into()).to_string());
        return Ok(report);
    };
    if index.size > MAX_INDEX {
        report.problems.push(
            ArchiveError::TooLarge {
                path: INDEX.into(),
                max: MAX_INDEX,
            }
            .to_string(),
        );
        return Ok(report);
    }
    // Exports write the index last, after every artifact it lists.
    if reader.is_tar() && reader.members().last().map(|m| m.path.as_str()) != Some(INDEX) {
        report.problems.push(format!(
            "{INDEX} is not the last member of the tar, as exports write it: members were added after it"
        ));
    }
    let data = match reader.open_member(INDEX) {
        Ok((_, data)) => data,
        Err(e) => {
            report.problems.push(format!("{INDEX}: {e}"));
            return Ok(report);
        }
    };
    let mut index = Index {
        checker: Checker {
            reader: &reader,
            report: &mut report,
        },
        created: false,
        ims_data: false,
    };
    let mut json =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, data));
    let parsed = (&mut json)
        .deserialize_map(&mut index)
        .and_then(|()| json.end());
    let (created, ims_data) = (index.created, index.ims_data);
    match parsed {
        Err(e) => report.problems.push(format!("{INDEX}: {e}")),
        Ok(()) => {
            for (key, present) in [("created", created), ("ims_data", ims_data)] {
                if !present {
                    report
                        .problems
                        .push(format!("{INDEX} has no `{key}`, which importers require"));
                }
            }
        }
    }
    Ok(report)
}

/// Checks artifact entries against the archive, one at a time.
struct Checker<'a> {
    reader: &'a ArchiveReader,
    report: &'a mut VerifyReport,
}

impl Checker<'_> {
    fn artifact(&mut self, url: String, entry: Value) {
        self.report.artifacts += 1;
        let mut checked = Vec::new();
        let outcome = self.check(&escaped(&url), &entry, &mut checked);
        let ok = outcome.is_ok();
        match outcome {
            Err(problem) => self.report.problems.push(problem),
            Ok(()) => {
                let sha = checked.contains(&"sha256");
                let etag = checked.contains(&"etag");
                self.report.sha256_verified += usize::from(sha);
                self.report.etag_verified += usize::from(etag);
                self.report.size_only += usize::from(!sha && !etag);
            }
        }
        self.report.checks.push(ArtifactCheck { url, checked, ok });
    }

    /// The first problem of one artifact, if any; `checked` gets what matched.
    fn check(
        &mut self,
        url: &str,
        entry: &Value,
        checked: &mut Vec<&'static str>,
    ) -> Result<(), String> {
        let relpath = entry
            .get("relpath")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}: no `relpath` in {INDEX}"))?;
        let shown = escaped(relpath);
        // The writer's normal form, so `s3_artifacts//x` finds `s3_artifacts/x`.
        let member = normalize_member_path(relpath).map_err(|e| format!("{url}: {e}"))?;
        if !member.starts_with(ARTIFACTS_DIR) {
            return Err(format!(
                "{url}: relpath {shown} is outside {ARTIFACTS_DIR}, where artifacts belong"
            ));
        }
        if self.reader.member(&member).is_none() {
            return Err(format!("{url}: member {shown} is missing from the archive"));
        }
        let (size, mut data) = self
            .reader
            .open_member(&member)
            .map_err(|e| format!("{url}: cannot read member {shown}: {e}"))?;
        let want_size = entry.get("size").and_then(Value::as_u64).or_else(|| {
            entry
                .pointer("/describe/artifact/ContentLength")
                .and_then(Value::as_u64)
        });
        if let Some(want) = want_size {
            if want != size {
                return Err(format!(
                    "{url}: member {shown} has {size} bytes, {INDEX} says {want}"
                ));
            }
            checked.push("size");
        }
        let want_sha = entry.get("sha256").and_then(Value::as_str);
        let etag = entry.get("etag").and_then(Value::as_str).or_else(|| {
            entry
                .pointer("/describe/artifact/ETag")
                .and_then(Value::as_str)
        });
        let part_size = entry.get("part_size").and_then(Value::as_u64);
        let mut sha = want_sha.map(|_| Sha256::new());
        let mut etag_check = etag.and_then(|e| EtagCheck::new(e, size, part_size));
        if sha.is_none() && etag_check.is_none() {
            return Ok(());
        }
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(h) = &mut sha {
                        h.update(&buf[..n]);
                    }
                    if let Some(c) = &mut etag_check {
                        c.update(&buf[..n]);
                    }
                    self.report.bytes_read += n as u64;
                }
                Err(e) => return Err(format!("{url}: reading member {shown}: {e}")),
            }
        }
        if let (Some(want), Some(h)) = (want_sha, sha) {
            let got = hex::encode(h.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(format!(
                    "{url}: member {shown} has sha256 {got}, {INDEX} says {}",
                    escaped(want)
                ));
            }
            checked.push("sha256");
        }
        if let Some(c) = etag_check {
            let multipart = c.is_multipart();
            match c.finish() {
                Ok(()) => checked.push("etag"),
                // The sha256 proved the bytes: the part size is just not one we know.
                Err(_) if multipart && checked.contains(&"sha256") => {}
                Err(why) => return Err(format!("{url}: member {shown}: {why}")),
            }
        }
        Ok(())
    }
}

/// Part sizes that S3 clients commonly use (aws-cli and boto3 default to
/// 8 MiB, S3's minimum is 5 MiB, ...), tried in this order when an index entry
/// records no part size, or one that does not reproduce its ETag.
const COMMON_PART_SIZES_MIB: [u64; 13] = [8, 5, 16, 15, 64, 10, 32, 100, 25, 50, 128, 6, 7];
/// Candidate part sizes hashed at once (each is one more MD5 pass).
const MAX_CANDIDATES: usize = 6;

/// Recomputes an S3 ETag from an object's bytes, when the ETag has the form
/// S3 gives unencrypted objects: `<md5>` (single PUT: the MD5 of the bytes)
/// or `<md5>-N` (multipart: the MD5 of the N parts' binary MD5s, which needs
/// the part size; each part size consistent with N is tried in one pass).
/// Other ETags cannot be checked.
enum EtagCheck {
    Single {
        want: String,
        md5: Md5,
    },
    Multipart {
        want: String,
        parts: Vec<PartHasher>,
    },
}

impl EtagCheck {
    fn new(raw: &str, size: u64, part_size: Option<u64>) -> Option<EtagCheck> {
        let want = raw.trim().trim_matches('"').to_ascii_lowercase();
        let (md5, count) = match want.split_once('-') {
            None => (want.as_str(), None),
            Some((md5, n)) => (md5, Some(n.parse::<u64>().ok().filter(|&n| n > 0)?)),
        };
        if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let Some(count) = count else {
            return Some(EtagCheck::Single {
                want,
                md5: Md5::new(),
            });
        };
        let sizes: Vec<u64> = if count == 1 {
            // Any part size from the object's size up gives the one part.
            vec![size]
        } else {
            let mut sizes = Vec::new();
            for p in part_size
                .into_iter()
                .chain(COMMON_PART_SIZES_MIB.iter().map(|m| m << 20))
            {
                if p > 0 && size.div_ceil(p) == count && !sizes.contains(&p) {
                    sizes.push(p);
                }
            }
            sizes.truncate(MAX_CANDIDATES);
            sizes
        };
        if size == 0 || sizes.is_empty() {
            return None;
        }
        Some(EtagCheck::Multipart {
            want,
            parts: sizes.into_iter().map(PartHasher::new).collect(),
        })
    }

    fn is_multipart(&self) -> bool {
        matches!(self, EtagCheck::Multipart { .. })
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            EtagCheck::Single { md5, .. } => md5.update(data),
            EtagCheck::Multipart { parts, .. } => parts.iter_mut().for_each(|p| p.update(data)),
        }
    }

    /// Whether the bytes reproduce the ETag; if not, why.
    fn finish(self) -> Result<(), String> {
        match self {
            EtagCheck::Single { want, md5 } => {
                let got = hex::encode(md5.finalize());
                if got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "its MD5 is {got}, but its ETag is {}",
                        escaped(&want)
                    ))
                }
            }
            EtagCheck::Multipart { want, parts } => {
                let tried: Vec<String> = parts
                    .iter()
                    .map(|p| crate::units::bytes(p.part_size))
                    .collect();
                if parts.into_iter().any(|p| p.finish() == want) {
                    Ok(())
                } else {
                    Err(format!(
                        "its bytes do not reproduce its multipart ETag {} with any part size tried ({})",
                        escaped(&want),
                        tried.join(", ")
                    ))
                }
            }
        }
    }
}

/// The multipart ETag of a byte stream cut into parts of one size.
struct PartHasher {
    part_size: u64,
    /// Bytes of the current part hashed so far.
    filled: u64,
    part: Md5,
    of_parts: Md5,
    count: u64,
}

impl PartHasher {
    fn new(part_size: u64) -> PartHasher {
        PartHasher {
            part_size,
            filled: 0,
            part: Md5::new(),
            of_parts: Md5::new(),
            count: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.part_size - self.filled;
            let n = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
            self.part.update(&data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == self.part_size {
                self.of_parts.update(self.part.finalize_reset());
                self.count += 1;
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> String {
        if self.filled > 0 || self.count == 0 {
            self.of_parts.update(self.part.finalize());
            self.count += 1;
        }
        format!("{}-{}", hex::encode(self.of_parts.finalize()), self.count)
    }
}

/// The top level of `export.json`: `s3_data` is checked as it streams by;
/// of the rest only the presence of `created` and `ims_data` matters.
struct Index<'a> {
    checker: Checker<'a>,
    created: bool,
    ims_data: bool,
}

impl<'de> Visitor<'de> for &mut Index<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (the export index)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "s3_data" => map.next_value_seed(S3Data(&mut self.checker))?,
                other => {
                    self.created |= other == "created";
                    self.ims_data |= other == "ims_data";
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
}

/// `s3_data`: null, or an object whose `artifacts` are checked.
struct S3Data<'c, 'a>(&'c mut Checker<'a>);

impl<'de> DeserializeSeed<'de> for S3Data<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for S3Data<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an object with `artifacts`")
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let checker = self.0;
        while let Some(key) = map.next_key::<String>()? {
            if key == "artifacts" {
                map.next_value_seed(Artifacts(&mut *checker))?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// `s3_data.artifacts`: URL -> entry; each entry is checked, then dropped.
struct Artifacts<'c, 'a>(&'c mut Checker<'a>);

impl<'de> DeserializeSeed<'de> for Artifacts<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Artifacts<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an object of artifact entries")
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(url) = map.next_key::<String>()? {
            let entry: Value = map.next_value()?;
            self.0.artifact(url, entry);
        }
        Ok(())
    }
}

/// Skips any JSON value without keeping it, through serde_json's
/// depth-limited path (`IgnoredAny` skips without a depth limit), so that
/// nesting deeper than what importers parse is refused here too.
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(data: &[u8]) -> String {
        hex::encode(Md5::digest(data))
    }

    /// The multipart ETag of `data` in parts of `part` bytes, as S3 computes it.
    fn multipart_etag(data: &[u8], part: usize) -> String {
        let mut of_parts = Vec::new();
        for chunk in data.chunks(part) {
            of_parts.extend_from_slice(&Md5::digest(chunk));
        }
        format!("{}-{}", md5_hex(&of_parts), data.chunks(part).count())
    }

    fn check(etag: &str, data: &[u8], part_size: Option<u64>) -> Option<Result<(), String>> {
        let mut c = EtagCheck::new(etag, data.len() as u64, part_size)?;
        // Uneven chunks: part boundaries fall inside updates.
        for chunk in data.chunks(333_333) {
            c.update(chunk);
        }
        Some(c.finish())
    }

    #[test]
    fn etags_are_recomputed_for_single_and_multipart_objects() {
        let data: Vec<u8> = (0..9_438_183u32).map(|i| (i % 251) as u8).collect();
        let quoted = format!("\"{}\"", md5_hex(&data));
        assert_eq!(check(&quoted, &data, None), Some(Ok(())));
        // 5 MiB parts, as the rootfs: found without a recorded part size,
        // and despite a wrong one.
        let five = multipart_etag(&data, 5 << 20);
        assert!(five.ends_with("-2"));
        assert_eq!(check(&five, &data, None), Some(Ok(())));
        assert_eq!(check(&five, &data, Some(8 << 20)), Some(Ok(())));
        // An unusual part size is found when recorded.
        let three = multipart_etag(&data, 3 << 20);
        assert_eq!(check(&three, &data, Some(3 << 20)), Some(Ok(())));
        // Without it, no common size gives 4 parts: the ETag cannot be checked.
        assert_eq!(check(&three, &data, None), None);
        // Exact multiples end on a full part.
        let exact = &data[..4 << 20];
        assert_eq!(
            check(&multipart_etag(exact, 2 << 20), exact, Some(2 << 20)),
            Some(Ok(()))
        );
        assert_eq!(
            check(&multipart_etag(&data, data.len()), &data, None),
            Some(Ok(()))
        );

        let mut flipped = data.clone();
        flipped[7_000_000] ^= 1;
        let single = check(&quoted, &flipped, None).unwrap().unwrap_err();
        assert!(single.contains("its MD5 is"), "{single}");
        let multi = check(&five, &flipped, None).unwrap().unwrap_err();
        assert!(multi.contains("with any part size tried (8"), "{multi}");
    }

    #[test]
    fn etags_that_are_not_md5s_cannot_be_checked() {
        for etag in [
            "x",
            "\"e\"",
            "abc-2",
            &format!("{}-0", "0".repeat(32)),
            &format!("{}-x", "0".repeat(32)),
        ] {
            assert!(check(etag, b"data", None).is_none(), "{etag}");
        }
        // No common part size gives 1000 parts of a small object.
        assert!(check(&format!("{}-1000", "0".repeat(32)), b"data", None).is_none());
    }
}
