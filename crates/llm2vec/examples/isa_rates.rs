//! How many multiply instructions one core runs per nanosecond on 256-bit vectors: the f32 FMA of the
//! f32 products, and the integer multiplies of the 8-bit products (`vpmaddwd` on 16-bit values,
//! `vpmaddubsw` on bytes, and AVX-VNNI's `vpdpbusd` on bytes where the processor has it), alone and
//! `vpmaddwd` with the add that follows it in the AVX2 kernel. A rate times the products per
//! instruction (8 for the FMA, 16 for `vpmaddwd`, 32 for `vpmaddubsw` and `vpdpbusd`) bounds that kind
//! of product on this processor.
//!
//! ```text
//! cargo run --release -p llm2vec --example isa_rates
//! ```
//!
//! Each round runs 24 multiplies into 12 registers (2 each, on zeros: no denormals): more than the
//! latency times the rate can hold back, so the rate sets the time. Needs AVX2 and FMA.

use std::time::Instant;

const ROUNDS: u32 = 20_000_000;

/// Zeroes the registers the rounds use (zeroing idioms, which take no execution unit).
macro_rules! zero {
    () => {
        "vpxor ymm0, ymm0, ymm0\nvpxor ymm1, ymm1, ymm1\nvpxor ymm2, ymm2, ymm2\nvpxor ymm3, ymm3, ymm3\n\
         vpxor ymm4, ymm4, ymm4\nvpxor ymm5, ymm5, ymm5\nvpxor ymm6, ymm6, ymm6\nvpxor ymm7, ymm7, ymm7\n\
         vpxor ymm8, ymm8, ymm8\nvpxor ymm9, ymm9, ymm9\nvpxor ymm10, ymm10, ymm10\nvpxor ymm11, ymm11, ymm11\n\
         vpxor ymm12, ymm12, ymm12\nvpxor ymm13, ymm13, ymm13\nvpxor ymm14, ymm14, ymm14\nvpxor ymm15, ymm15, ymm15\n"
    };
}

/// `$op ymmN, ymm14, ymm15` for N in 0..12, twice.
macro_rules! round {
    ($op:literal) => {
        concat!(round!(@ $op), round!(@ $op))
    };
    (@ $op:literal) => {
        concat!(
            $op, " ymm0, ymm14, ymm15\n", $op, " ymm1, ymm14, ymm15\n", $op, " ymm2, ymm14, ymm15\n",
            $op, " ymm3, ymm14, ymm15\n", $op, " ymm4, ymm14, ymm15\n", $op, " ymm5, ymm14, ymm15\n",
            $op, " ymm6, ymm14, ymm15\n", $op, " ymm7, ymm14, ymm15\n", $op, " ymm8, ymm14, ymm15\n",
            $op, " ymm9, ymm14, ymm15\n", $op, " ymm10, ymm14, ymm15\n", $op, " ymm11, ymm14, ymm15\n"
        )
    };
}

/// Times `ROUNDS` runs of the instructions `$text` (24 multiplies), after zeroing the registers once, in
/// one loop, and prints multiplies per nanosecond.
macro_rules! rate {
    ($name:literal, $text:expr) => {{
        let start = Instant::now();
        // SAFETY: the instructions touch only the registers declared clobbered; `main` checked that the
        // processor has AVX2 and FMA.
        unsafe {
            std::arch::asm!(
                zero!(),
                "2:",
                $text,
                "dec {rounds:e}",
                "jnz 2b",
                rounds = inout(reg) ROUNDS => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nostack, nomem),
            );
        }
        let per_ns = f64::from(ROUNDS) * 24.0 / start.elapsed().as_nanos() as f64;
        println!("{:<34} {per_ns:5.2} per ns", $name);
    }};
}

fn main() {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        eprintln!("isa_rates: this processor lacks AVX2 or FMA");
        std::process::exit(1);
    }
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    println!("processor: {}", model.as_deref().unwrap_or("unknown"));
    rate!("vfmadd231ps (8 products)", round!("vfmadd231ps"));
    rate!("vpmaddwd (16 products)", round!("vpmaddwd"));
    rate!("vpmaddubsw (32 products)", round!("vpmaddubsw"));
    rate!(
        "vpmaddwd + vpaddd (16 products)",
        concat!(
            round!("vpmaddwd"),
            "vpaddd ymm12, ymm12, ymm0\nvpaddd ymm13, ymm13, ymm1\nvpaddd ymm12, ymm12, ymm2\n",
            "vpaddd ymm13, ymm13, ymm3\nvpaddd ymm12, ymm12, ymm4\nvpaddd ymm13, ymm13, ymm5\n",
            "vpaddd ymm12, ymm12, ymm6\nvpaddd ymm13, ymm13, ymm7\nvpaddd ymm12, ymm12, ymm8\n",
            "vpaddd ymm13, ymm13, ymm9\nvpaddd ymm12, ymm12, ymm10\nvpaddd ymm13, ymm13, ymm11\n"
        )
    );
    if std::arch::is_x86_feature_detected!("avxvnni") {
        rate!("vpdpbusd, AVX-VNNI (32 products)", round!("{{vex}} vpdpbusd"));
    }
}
