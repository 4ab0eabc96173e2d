//! `import-soft-overwrite`: HPE's `soft_overwrite` import mode as a plan: the pure function
//! `import_core::modes::soft_overwrite` (see its documentation for the rules and where
//! they differ from HPE) turned into effects. Inputs (`with`): `archive`
//! (the output of `archive-read`), `ims` (of `ims-fetch` with
//! `include_deleted = true`), `s3` (of `s3-restore-plan`),
//! `ignore_running_jobs` and `created` (the backup's timestamp). Output:
//! the review (`import_core::modes::Review`): every record's action with
//! its diff, deletes, S3 targets with bytes, data-file writes, the backup
//! and the expected end state.
use import_core::modes::Mode;
use import_core::wit::{StrategyWith, describe, run_mode};
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput};

struct ImportSoftOverwrite;

impl Step for ImportSoftOverwrite {
    type With = StrategyWith;

    fn describe() -> PluginInfo {
        describe(
            Mode::SoftOverwrite,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
        )
    }

    fn run(input: Input<StrategyWith>) -> Result<StepOutput, StepError> {
        run_mode(Mode::SoftOverwrite, input.with)
    }
}

imsflow_pdk::export_step!(ImportSoftOverwrite);
