//! IMS's file-backed store: one JSON array per table, under the same file
//! names as real IMS, loaded at start and rewritten whole on every change.
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub type Record = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    PublicKeys,
    Recipes,
    Images,
    Jobs,
    DeletedPublicKeys,
    DeletedRecipes,
    DeletedImages,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::PublicKeys,
        Table::Recipes,
        Table::Images,
        Table::Jobs,
        Table::DeletedPublicKeys,
        Table::DeletedRecipes,
        Table::DeletedImages,
    ];

    /// The data file name real IMS (CSM 1.6) uses.
    pub fn file_name(self) -> &'static str {
        match self {
            Table::PublicKeys => "v2_public_keys.json",
            Table::Recipes => "v2.2_recipes.json",
            Table::Images => "v2.1_images.json",
            Table::Jobs => "v2.4_jobs.json",
            Table::DeletedPublicKeys => "v3_deleted_public_keys.json",
            Table::DeletedRecipes => "v3.2_deleted_recipes.json",
            Table::DeletedImages => "v3.1_deleted_images.json",
        }
    }

    /// Fields of the storage schema; anything else is dropped on load, as IMS does.
    pub fn fields(self) -> &'static [&'static str] {
        const KEY: &[&str] = &["id", "created", "name", "public_key"];
        const RECIPE: &[&str] = &[
            "id",
            "created",
            "name",
            "recipe_type",
            "linux_distribution",
            "link",
            "template_dictionary",
            "require_dkms",
            "arch",
        ];
        const IMAGE: &[&str] = &["id", "created", "name", "link", "arch", "metadata"];
        const JOB: &[&str] = &[
            "id",
            "created",
            "job_type",
            "artifact_id",
            "public_key_id",
            "image_root_archive_name",
            "enable_debug",
            "build_env_size",
            "job_mem_size",
            "kernel_file_name",
            "initrd_file_name",
            "kernel_parameters_file_name",
            "ssh_containers",
            "require_dkms",
            "status",
            "resultant_image_id",
            "kubernetes_job",
            "kubernetes_service",
            "kubernetes_configmap",
            "kubernetes_namespace",
            "kubernetes_pvc",
            "kubernetes_secret",
            "arch",
            "remote_build_node",
        ];
        match self {
            Table::PublicKeys => KEY,
            Table::Recipes => RECIPE,
            Table::Images => IMAGE,
            Table::Jobs => JOB,
            // A deleted record is the live record plus `deleted` (see `keeps`).
            Table::DeletedPublicKeys => KEY,
            Table::DeletedRecipes => RECIPE,
            Table::DeletedImages => IMAGE,
        }
    }

    /// Whether the storage schema keeps `field`.
    pub fn keeps(self, field: &str) -> bool {
        self.fields().contains(&field) || (self.live() != self && field == "deleted")
    }

    pub fn deleted(self) -> Option<Table> {
        match self {
            Table::PublicKeys => Some(Table::DeletedPublicKeys),
            Table::Recipes => Some(Table::DeletedRecipes),
            Table::Images => Some(Table::DeletedImages),
            _ => None,
        }
    }

    pub fn live(self) -> Table {
        match self {
            Table::DeletedPublicKeys => Table::PublicKeys,
            Table::DeletedRecipes => Table::Recipes,
            Table::DeletedImages => Table::Images,
            t => t,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a JSON array of records: {message}")]
    Corrupt { path: PathBuf, message: String },
}

pub struct Store {
    dir: PathBuf,
    tables: Vec<(Table, Vec<Record>)>,
}

impl Store {
    /// Loads every table from `dir`; a missing file is created as `[]`.
    pub fn load(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
        let mut tables = Vec::new();
        for table in Table::ALL {
            let path = dir.join(table.file_name());
            let records = match std::fs::read_to_string(&path) {
                Ok(text) => parse_table(table, &path, &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    write_json(&path, &Value::Array(vec![]))?;
                    Vec::new()
                }
                Err(source) => return Err(StoreError::Io { path, source }),
            };
            tables.push((table, records));
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            tables,
        })
    }

    pub fn all(&self, table: Table) -> &[Record] {
        &self.tables.iter().find(|(t, _)| *t == table).unwrap().1
    }

    fn table_mut(&mut self, table: Table) -> &mut Vec<Record> {
        &mut self.tables.iter_mut().find(|(t, _)| *t == table).unwrap().1
    }

    pub fn get(&self, table: Table, id: &str) -> Option<&Record> {
        self.all(table)
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Inserts or replaces by id, then rewrites the file.
    pub fn put(&mut self, table: Table, record: Record) -> Result<(), StoreError> {
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let rows = self.table_mut(table);
        match rows
            .iter_mut()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(&id))
        {
            Some(slot) => *slot = record,
            None => rows.push(record),
        }
        self.save(table)
    }

    pub fn remove(&mut self, table: Table, id: &str) -> Result<Option<Record>, StoreError> {
        let rows = self.table_mut(table);
        let Some(pos) = rows
            .iter()
            .position(|r| r.get("id").and_then(Value::as_str) == Some(id))
        else {
            return Ok(None);
        };
        let record = rows.remove(pos);
        self.save(table)?;
        Ok(Some(record))
    }

    /// Rewrites every data file from memory, as a running IMS does for a
    /// table on each API write (the race of a data-file import).
    pub fn save_all(&self) -> Result<(), StoreError> {
        Table::ALL.into_iter().try_for_each(|t| self.save(t))
    }

    fn save(&self, table: Table) -> Result<(), StoreError> {
        let rows = self.all(table).iter().cloned().map(Value::Object).collect();
        write_json(&self.dir.join(table.file_name()), &Value::Array(rows))
    }
}

fn parse_table(table: Table, path: &Path, text: &str) -> Result<Vec<Record>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.into(),
        message,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(corrupt("the top level is not an array".into()));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(mut record) = item else {
                return Err(corrupt(format!("item {i} is not an object")));
            };
            record.retain(|k, _| table.keeps(k));
            for required in ["id", "created"] {
                if !record
                    .get(required)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    return Err(corrupt(format!("item {i} has no `{required}`")));
                }
            }
            Ok(record)
        })
        .collect()
}

fn write_json(path: &Path, value: &Value) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let io = |source| StoreError::Io {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, serde_json::to_vec(value).unwrap()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
