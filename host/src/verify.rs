//! `imsflow verify`: re-reads an export archive (tar or directory) and checks
//! every artifact `export.json` lists: the member exists, and its size and
//! sha256 match what the export recorded. Works on HPE's archives too, which
//! carry no checksums (then sizes are checked against `describe`).
use crate::archive::{ArchiveError, ArchiveReader};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub artifacts: usize,
    /// Artifacts whose bytes were hashed and matched a recorded sha256.
    pub checksummed: usize,
    pub bytes_read: u64,
    pub problems: Vec<String>,
}

/// Largest `export.json` read.
const MAX_INDEX: u64 = 1 << 30;

pub fn verify(path: &Path) -> Result<VerifyReport, ArchiveError> {
    let reader = ArchiveReader::open(path)?;
    let mut report = VerifyReport::default();
    let index = match reader.read_json("export.json", MAX_INDEX) {
        Ok(text) => text,
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };
    let doc: Value = match serde_json::from_str(&index) {
        Ok(doc) => doc,
        Err(e) => {
            report.problems.push(format!("export.json: {e}"));
            return Ok(report);
        }
    };
    for key in ["created", "ims_data"] {
        if doc.get(key).is_none() {
            report.problems.push(format!(
                "export.json has no `{key}`, which importers require"
            ));
        }
    }
    let Some(artifacts) = doc.pointer("/s3_data/artifacts").and_then(Value::as_object) else {
        return Ok(report);
    };
    for (url, entry) in artifacts {
        report.artifacts += 1;
        let Some(relpath) = entry.get("relpath").and_then(Value::as_str) else {
            report
                .problems
                .push(format!("{url}: no `relpath` in export.json"));
            continue;
        };
        let want_size = entry.get("size").and_then(Value::as_u64).or_else(|| {
            entry
                .pointer("/describe/artifact/ContentLength")
                .and_then(Value::as_u64)
        });
        let want_sha = entry.get("sha256").and_then(Value::as_str);
        let (size, mut data) = match reader.open_member(relpath) {
            Ok(m) => m,
            Err(_) => {
                report.problems.push(format!(
                    "{url}: member {relpath} is missing from the archive"
                ));
                continue;
            }
        };
        if let Some(want) = want_size
            && want != size
        {
            report.problems.push(format!(
                "{url}: member {relpath} has {size} bytes, export.json says {want}"
            ));
            continue;
        }
        let Some(want_sha) = want_sha else { continue };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    report.bytes_read += n as u64;
                }
                Err(e) => {
                    report
                        .problems
                        .push(format!("{url}: reading member {relpath}: {e}"));
                    break;
                }
            }
        }
        let got = hex::encode(hasher.finalize());
        if got == want_sha {
            report.checksummed += 1;
        } else {
            report.problems.push(format!(
                "{url}: member {relpath} has sha256 {got}, export.json says {want_sha}"
            ));
        }
    }
    Ok(report)
}
