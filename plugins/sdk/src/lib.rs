//! imsflow plugin development kit.
//!
//! A plugin implements [`Step`] and calls [`export_step!`]. The kit handles the
//! JSON envelope (`{"with": ..., "context": ...}`) so a plugin deals in typed
//! Rust values.
//!
//! ```text
//! struct MyStep;
//! impl imsflow_pdk::Step for MyStep { ... }
//! imsflow_pdk::export_step!(MyStep);
//! ```
//!
//! A link source (a plugin that finds S3 links for the export) is a single
//! function over a [`Host`], tested natively with [`FakeHost`]:
//!
//! ```text
//! fn links(host: &impl Host, with: MyWith) -> Result<Vec<Link>, StepError> { ... }
//! imsflow_pdk::link_source!(links, services: ["bos-v1"]);
//! ```
// In a module: `pub_export_macro` puts the export macro at the crate root,
// which would clash with the generated `pub use` if generated at the root.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "export_component",
        default_bindings_module: "imsflow_pdk::bindings",
    });
}

pub use bindings::Guest;
pub use bindings::imsflow::plugin::types::*;
pub use bindings::imsflow::plugin::{archive, log, s3, services};
pub use serde_json;

pub mod host;
pub mod links;

#[cfg(not(target_family = "wasm"))]
pub use host::FakeHost;
pub use host::Host;
pub use links::Link;

use serde::de::DeserializeOwned;

/// The decoded step input.
pub struct Input<W> {
    /// The step's resolved `with` values.
    pub with: W,
    /// The run context (run id, workflow name, params).
    pub context: serde_json::Value,
}

/// What a plugin implements.
pub trait Step {
    /// The shape of the step's `with` table.
    type With: DeserializeOwned;
    fn describe() -> PluginInfo;
    fn run(input: Input<Self::With>) -> Result<StepOutput, StepError>;
}

#[doc(hidden)]
pub fn run_step<S: Step>(input: String) -> Result<StepOutput, StepError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        with: serde_json::Value,
        #[serde(default)]
        context: serde_json::Value,
    }
    let env: Envelope = serde_json::from_str(&input)
        .map_err(|e| StepError::InvalidInput(format!("input is not a step envelope: {e}")))?;
    let with = serde_json::from_value(env.with)
        .map_err(|e| StepError::InvalidInput(format!("`with`: {e}")))?;
    S::run(Input {
        with,
        context: env.context,
    })
}

/// Builds a [`StepOutput`] from any serialisable output and a list of effects.
pub fn output(value: &impl serde::Serialize, effects: Vec<Effect>) -> StepOutput {
    StepOutput {
        output: serde_json::to_string(value).expect("output is serialisable"),
        effects,
    }
}

/// Turns a host error into a step error, keeping `denied` distinct.
pub fn host_err(context: &str, e: HostError) -> StepError {
    match e {
        HostError::Denied(m) => StepError::Denied(format!("{context}: {m}")),
        HostError::NotFound(m) => StepError::Failed(format!("{context}: not found: {m}")),
        HostError::TooLarge(n) => StepError::Failed(format!("{context}: larger than {n} bytes")),
        HostError::Failed(m) => StepError::Failed(format!("{context}: {m}")),
    }
}

/// GETs a JSON document from a granted service; non-200 answers are errors
/// that name the service, path and status.
pub fn service_json(service: &str, path: &str) -> Result<serde_json::Value, StepError> {
    let what = format!("GET {service} {path}");
    let resp = services::get(service, path).map_err(|e| host_err(&what, e))?;
    if resp.status != 200 {
        let body: String = resp.body.chars().take(300).collect();
        return Err(StepError::Failed(format!(
            "{what}: HTTP {} (expected 200): {body}",
            resp.status
        )));
    }
    serde_json::from_str(&resp.body)
        .map_err(|e| StepError::Failed(format!("{what}: the answer is not JSON: {e}")))
}

/// Log at info level, attributed to this step by the host.
pub fn info(msg: &str) {
    log::log(log::Level::Info, msg);
}

/// Log at warn level.
pub fn warn(msg: &str) {
    log::log(log::Level::Warn, msg);
}

/// Plugin info from the crate's Cargo metadata, with the services the plugin
/// reads and the effect kinds it may emit:
/// `plugin_info!("ims")` (reads only) or
/// `plugin_info!(services: ["ims"], effects: ["ims-delete"])`.
#[macro_export]
macro_rules! plugin_info {
    (services: [$($service:expr),* $(,)?], effects: [$($effect:expr),* $(,)?] $(,)?) => {
        $crate::PluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            services: vec![$($service.into()),*],
            effects: vec![$($effect.into()),*],
        }
    };
    (effects: [$($effect:expr),* $(,)?] $(,)?) => {
        $crate::plugin_info!(services: [], effects: [$($effect),*])
    };
    ($($service:expr),* $(,)?) => {
        $crate::plugin_info!(services: [$($service),*], effects: [])
    };
}

/// Exports a [`Step`] implementation as the component's `describe`/`run`.
#[macro_export]
macro_rules! export_step {
    ($ty:ident) => {
        const _: () = {
            struct __ImsflowStep;
            impl $crate::Guest for __ImsflowStep {
                fn describe() -> $crate::PluginInfo {
                    <$ty as $crate::Step>::describe()
                }
                fn run(input: String) -> Result<$crate::StepOutput, $crate::StepError> {
                    $crate::run_step::<$ty>(input)
                }
            }
    $crate::bindings::export_component!(__ImsflowStep with_types_in $crate::bindings);
        };
    };
}

/// Makes a link-source function a complete plugin: `describe` (name, version
/// and description from Cargo.toml, the services given, no effects) and `run`
/// (decodes `with` into the function's second parameter, calls it with the
/// real host, dedupes, returns `{"links": [...]}`).
///
/// `link_source!(links, services: ["bos-v1"]);` where
/// `fn links(host: &impl Host, with: W) -> Result<Vec<Link>, StepError>` and
/// `W: serde::Deserialize` (use `serde_json::Value` to take anything).
/// The exports exist only in the wasm build; native builds (tests) get the
/// function alone.
#[macro_export]
macro_rules! link_source {
    ($links:path $(, services: [$($service:expr),* $(,)?])? $(,)?) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct __ImsflowLinkSource;
            impl $crate::Guest for __ImsflowLinkSource {
                fn describe() -> $crate::PluginInfo {
                    $crate::plugin_info!(services: [$($($service),*)?], effects: [])
                }
                fn run(input: String) -> Result<$crate::StepOutput, $crate::StepError> {
                    $crate::links::run_link_source(&$crate::host::WasmHost, &input, $links)
                }
            }
            $crate::bindings::export_component!(__ImsflowLinkSource with_types_in $crate::bindings);
        };
    };
}
