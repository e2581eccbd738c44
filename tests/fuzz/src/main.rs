//! One libFuzzer binary for every target in `rewind::fuzz`; the target is
//! named by `REWIND_FUZZ_TARGET` (scripts/fuzz sets it).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<&'static rewind::fuzz::Target> = LazyLock::new(|| {
    let name = std::env::var("REWIND_FUZZ_TARGET").unwrap_or_default();
    rewind::fuzz::target(&name).unwrap_or_else(|| {
        let known: Vec<&str> = rewind::fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "REWIND_FUZZ_TARGET must name a target: {}",
            known.join(", ")
        );
        std::process::exit(2)
    })
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (TARGET.run)(data);
});
