//! The live system read back after an import: IMS through its HTTP API
//! against the data files written (the race of HPE's procedure, where IMS
//! writes its memory over a new file between the write and the restart).
//! Beside `postcheck`, the import's end-state verification; `verify` checks
//! archives.
use crate::backends::{BackendError, Backends};
use crate::k8s::ims::Table;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the IMS API serves after a restart, against what was written.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    #[error("reading IMS `{table}` back through its API: {message}")]
    Api { table: Table, message: String },
    #[error(
        "after the restart, IMS serves other `{table}` records than the data file written \
         ({}): IMS wrote its in-memory state over the new file between the write and the \
         restart (a known race of HPE's procedure)",
        describe_ids(missing, unexpected, changed)
    )]
    Mismatch {
        table: Table,
        /// Ids written but not served.
        missing: Vec<String>,
        /// Ids served but not written.
        unexpected: Vec<String>,
        /// `id.field` served with another value than written.
        changed: Vec<String>,
    },
}

fn describe_ids(missing: &[String], unexpected: &[String], changed: &[String]) -> String {
    let list = |what: &str, ids: &[String]| {
        let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
        let more = ids.len().saturating_sub(shown.len());
        format!(
            "{what} {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(list("missing", missing));
    }
    if !unexpected.is_empty() {
        parts.push(list("not written", unexpected));
    }
    if !changed.is_empty() {
        parts.push(list("different", changed));
    }
    parts.join("; ")
}

/// IMS read back through its API against the tables written
/// (`table` → the JSON array that was written as its file). IMS must serve
/// exactly the ids written, and each written field that it serves with the
/// value written (fields outside IMS's schema are dropped when it loads a
/// file, so they are not compared). A difference is the race: IMS wrote
/// its memory over the new file before the restart.
/// IMS may serve more records than written only in the tables of `keeping`
/// (writes that keep what IMS accepted since planning).
pub async fn verify_tables(
    backends: &Backends,
    written: &BTreeMap<Table, Value>,
    keeping: &std::collections::BTreeSet<Table>,
) -> Result<(), ReadBackError> {
    for (&table, records) in written {
        let resp = backends
            .service_get("ims", table.api_path())
            .await
            .map_err(|e: BackendError| ReadBackError::Api {
                table,
                message: e.to_string(),
            })?;
        if resp.status != 200 {
            return Err(ReadBackError::Api {
                table,
                message: format!(
                    "GET {}: HTTP {}: {}",
                    table.api_path(),
                    resp.status,
                    resp.body.chars().take(300).collect::<String>()
                ),
            });
        }
        let served: Value = serde_json::from_str(&resp.body).map_err(|e| ReadBackError::Api {
            table,
            message: format!("the answer is not JSON: {e}"),
        })?;
        compare_table(table, records, &served, keeping.contains(&table))?;
    }
    Ok(())
}

/// The comparison of `verify_tables`, for one table.
pub fn compare_table(
    table: Table,
    written: &Value,
    served: &Value,
    others_allowed: bool,
) -> Result<(), ReadBackError> {
    let by_id = |v: &Value| -> BTreeMap<String, serde_json::Map<String, Value>> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let r = r.as_object()?;
                Some((r.get("id")?.as_str()?.to_string(), r.clone()))
            })
            .collect()
    };
    let (written, served) = (by_id(written), by_id(served));
    let missing: Vec<String> = written
        .keys()
        .filter(|id| !served.contains_key(*id))
        .cloned()
        .collect();
    let unexpected: Vec<String> = served
        .keys()
        .filter(|id| !others_allowed && !written.contains_key(*id))
        .cloned()
        .collect();
    let mut changed = Vec::new();
    for (id, record) in &written {
        let Some(now) = served.get(id) else { continue };
        for (field, value) in record {
            if let Some(v) = now.get(field)
                && v != value
            {
                changed.push(format!("{id}.{field}"));
            }
        }
    }
    if missing.is_empty() && unexpected.is_empty() && changed.is_empty() {
        Ok(())
    } else {
        Err(ReadBackError::Mismatch {
            table,
            missing,
            unexpected,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_comparison_names_missing_extra_and_changed_records() {
        let written = json!([{"id": "a", "name": "x", "dropped": 1}, {"id": "b", "name": "y"}]);
        let same = json!([{"id": "b", "name": "y", "arch": "x86_64"}, {"id": "a", "name": "x"}]);
        compare_table(Table::Images, &written, &same, false).unwrap();
        let old = json!([{"id": "a", "name": "old"}, {"id": "c"}]);
        let err = compare_table(Table::Images, &written, &old, false).unwrap_err();
        let ReadBackError::Mismatch {
            missing,
            unexpected,
            changed,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(
            (missing, unexpected, changed),
            (
                &vec!["b".to_string()],
                &vec!["c".to_string()],
                &vec!["a.name".to_string()]
            )
        );
        let text = err.to_string();
        assert!(text.contains("race"), "{text}");
        // A write that keeps what IMS accepted since planning tolerates
        // records it did not write, but not a lost or changed one.
        let more = json!([{"id": "a", "name": "x"}, {"id": "b", "name": "y"}, {"id": "new"}]);
        compare_table(Table::Images, &written, &more, true).unwrap();
        assert!(compare_table(Table::Images, &written, &more, false).is_err());
        assert!(compare_table(Table::Images, &written, &old, true).is_err());
    }
}
