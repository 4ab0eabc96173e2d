# Sourced by scripts/demo, scripts/test and .ci/run before they build.
# rustup adds the targets that rust-toolchain.toml pins only when it installs the
# toolchain itself, not to a toolchain that is already there, and these machines set
# RUSTUP_AUTO_INSTALL=0. `rustup toolchain install` with no argument, run in the
# repository, installs exactly what the file names (targets and components included)
# and takes a second when all of it is present.
ensure_toolchain() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if ! (cd "$root" && rustup toolchain install --no-self-update >&2); then
    echo "error: could not install the Rust toolchain and targets named in $root/rust-toolchain.toml" >&2
    return 1
  fi
  if [ ! -d "${CARGO_TARGET_DIR:-$root/target}/wasm" ]; then
    echo "First build: compiling imsflow, csm-sim and the stock plugins takes about 6 minutes on 2 cores; later builds take seconds." >&2
  fi
}
