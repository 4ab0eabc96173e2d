//! Per-byte cost of the hashes the transfer engine computes, measured in the
//! same run on the same buffer: sha256 (sha2, SHA-NI where the CPU has it:
//! every byte exported, uploaded or verified), MD5 (md-5 with asm: ETags
//! recomputed from bytes) and a memcpy as the floor. Prints CPU seconds per
//! GiB and the ratio to sha256's.
//!
//! Measured on this project's 2-vCPU Xeon (SHA-NI, AVX-512): sha256 0.54,
//! MD5 1.28 (2.4x), memcpy 0.04 CPU s/GiB. aws-lc's sha256 (linked for TLS)
//! was tried too: 0.54, no faster, so sha2 stays.
//!
//! Run: `cargo bench --bench hashing` (IMSFLOW_BENCH_HASH_MIB, default 1024).
use std::time::Instant;

fn main() {
    let mib: usize = std::env::var("IMSFLOW_BENCH_HASH_MIB")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1024);
    // 1 MiB blocks: what the transfer engine hands its hashers.
    let block: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let time = |f: &mut dyn FnMut(&[u8])| {
        let t = Instant::now();
        for _ in 0..mib {
            f(&block);
        }
        t.elapsed().as_secs_f64() * 1024.0 / mib as f64
    };
    let sha2 = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let s = time(&mut |b| h.update(b));
        std::hint::black_box(h.finalize());
        s
    };
    let md5 = {
        use md5::Digest;
        let mut h = md5::Md5::new();
        let s = time(&mut |b| h.update(b));
        std::hint::black_box(h.finalize());
        s
    };
    let copy = {
        let mut dst = vec![0u8; block.len()];
        time(&mut |b| {
            dst.copy_from_slice(b);
            std::hint::black_box(&dst);
        })
    };
    println!("{mib} MiB in 1 MiB blocks, CPU s/GiB (ratio to sha256's):");
    for (name, s) in [
        ("sha256 (sha2)", sha2),
        ("md5, md-5 asm", md5),
        ("memcpy", copy),
    ] {
        println!("  {name:<28} {s:>6.3}  {:>5.2}x", s / sha2);
    }
}
