//! A report as the collector receives it: the DSSE envelope, then the
//! report payload inside it (`POST /api/v1/reports`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_shared::envelope::DEFAULT_MAX_ENVELOPE_BYTES;
use palisade_shared::{Envelope, Report};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = Envelope::from_json(bytes, DEFAULT_MAX_ENVELOPE_BYTES) {
        if let Ok(payload) = envelope.payload_unverified() {
            let _ = Report::from_json(&payload);
        }
    }
    // A payload on its own too, so the report parser sees more than what
    // happens to be valid base64 inside a valid envelope.
    let _ = Report::from_json(bytes);
});
