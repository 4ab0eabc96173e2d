//! Host-side bindings of the WIT contract in `wit/plugin.wit`.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    imports: { default: async },
    exports: { default: async },
});

// `self::`: the WIT package `imsflow:plugin` makes a module `imsflow` here,
// and the unit tests also see the crate `imsflow` (its self dev-dependency,
// for the test hooks; host/Cargo.toml).
pub use self::imsflow::plugin::types;
