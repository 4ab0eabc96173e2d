//! Host-side bindings of the WIT contract in `wit/plugin.wit`.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    imports: { default: async },
    exports: { default: async },
});

pub use imsflow::plugin::types;
