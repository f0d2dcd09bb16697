//! The side endpoint's path: YAML/JSON documents from arbitrary bytes, classified, typed and
//! evaluated as a batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use live_migration_guard::batch;
use live_migration_guard::facts::Facts;
use live_migration_guard::facts::load::{self, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = load::parse_bytes_limited(data, "fuzz", Limits::Request { max_objects: load::MAX_REQUEST_OBJECTS }) {
        let _ = batch::evaluate_all(&loaded, &Facts::none());
    }
});
