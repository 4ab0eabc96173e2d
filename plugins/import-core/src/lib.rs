//! The logic of imsflow's import workflows, as pure functions with native
//! tests. The import plugins (`archive-read`, `s3-restore-plan`, `import-add`,
//! `import-update`, `import-overwrite`, `import-soft-overwrite`) only read
//! their inputs, call into this crate and convert the result; nothing here
//! knows Wasm, except the conversion module behind the `pdk` feature.
//!
//! - [`archive`]: parse and validate an archive's `export.json` (HPE's format
//!   and imsflow's), listing every problem at once;
//! - [`ims`]: the current IMS state as `ims-fetch` returns it;
//! - [`s3`]: S3 URLs, object heads, ETags and the ETag-faithful part size;
//! - [`restore`]: the S3 restore plan: which objects to upload, which are
//!   present and identical, which conflict;
//! - [`modes`]: HPE's four import modes, each a function from (archive,
//!   current IMS, S3 state, options) to effects and a review, one function
//!   per phase (docs/import.md);
//! - [`backup`]: the pre-import backup (an imsflow export of the current
//!   records plus the S3 objects the import deletes or replaces);
//! - [`effect`]: the effects, as plain data.
pub mod archive;
pub mod backup;
pub mod effect;
pub mod ims;
pub mod modes;
pub mod restore;
pub mod s3;

#[cfg(feature = "pdk")]
pub mod wit;

#[cfg(test)]
mod testdata;
