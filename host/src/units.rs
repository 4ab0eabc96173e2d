//! Human-readable sizes for plans and summaries.

/// `n` scaled by 1024 until below 1024 (or out of units): value and unit index.
fn scale(n: u64, units: usize) -> (f64, usize) {
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units - 1 {
        value /= 1024.0;
        unit += 1;
    }
    (value, unit)
}

/// Formats a byte count with binary units, e.g. `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    match scale(n, UNITS.len()) {
        (_, 0) => format!("{n} B"),
        (value, unit) => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// HPE's estimate format: 1024-based, three decimals, `<unit>bytes`.
pub fn hpe(n: u64) -> String {
    const UNITS: [&str; 6] = ["", "kilo", "mega", "giga", "tera", "peta"];
    let (value, unit) = scale(n, UNITS.len());
    format!("{value:.3} {}bytes", UNITS[unit])
}
