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
use crate::etag::EtagCheck;
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

/// How much `verify_with` recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every hash the index allows: the sha256 and the S3 ETag, whose
    /// multipart form also proves the recorded part size (`imsflow verify`).
    Full,
    /// That the bytes are the exported ones: the sha256 where recorded, the
    /// ETag only where it is not (an import's preflight). An MD5 pass costs
    /// 2.4x a sha256 one, and a sha256 match already proves the bytes.
    Integrity,
}

pub fn verify(path: &Path) -> Result<VerifyReport, ArchiveError> {
    verify_with(path, Depth::Full)
}

pub fn verify_with(path: &Path, depth: Depth) -> Result<VerifyReport, ArchiveError> {
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
            depth,
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
    depth: Depth,
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
        let mut etag_check = etag
            .filter(|_| self.depth == Depth::Full || sha.is_none())
            .and_then(|e| EtagCheck::new(e, size, part_size));
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
                Ok(_) => checked.push("etag"),
                // The sha256 proved the bytes: the part size is just not one we know.
                Err(_) if multipart && checked.contains(&"sha256") => {}
                Err(why) => return Err(format!("{url}: member {shown}: {why}")),
            }
        }
        Ok(())
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
                "s3_data" => map.next_value_seed(NullableMap(S3Data(&mut self.checker)))?,
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

/// What to do with each entry of a nullable JSON object read as it streams.
trait Entries {
    /// For error messages: what the object is.
    const WHAT: &'static str;
    fn entry<'de, A: MapAccess<'de>>(&mut self, key: String, map: &mut A) -> Result<(), A::Error>;
}

/// A JSON object (or null) whose entries are handed one by one to `E`.
struct NullableMap<E>(E);

impl<'de, E: Entries> DeserializeSeed<'de> for NullableMap<E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, E: Entries> Visitor<'de> for NullableMap<E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(E::WHAT)
    }

    fn visit_none<X>(self) -> Result<(), X> {
        Ok(())
    }

    fn visit_unit<X>(self) -> Result<(), X> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.0.entry(key, &mut map)?;
        }
        Ok(())
    }
}

/// `s3_data`: null, or an object whose `artifacts` are checked.
struct S3Data<'c, 'a>(&'c mut Checker<'a>);

impl Entries for S3Data<'_, '_> {
    const WHAT: &'static str = "null or an object with `artifacts`";

    fn entry<'de, A: MapAccess<'de>>(&mut self, key: String, map: &mut A) -> Result<(), A::Error> {
        if key == "artifacts" {
            map.next_value_seed(NullableMap(Artifacts(&mut *self.0)))
        } else {
            map.next_value::<Skip>().map(drop)
        }
    }
}

/// `s3_data.artifacts`: URL -> entry; each entry is checked, then dropped.
struct Artifacts<'c, 'a>(&'c mut Checker<'a>);

impl Entries for Artifacts<'_, '_> {
    const WHAT: &'static str = "null or an object of artifact entries";

    fn entry<'de, A: MapAccess<'de>>(&mut self, url: String, map: &mut A) -> Result<(), A::Error> {
        let entry: Value = map.next_value()?;
        self.0.artifact(url, entry);
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
