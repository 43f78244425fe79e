//! Any bytes as a Slack interaction body: parsing returns an interaction or a named error and
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = regate_chat::slack::interaction::parse(data);
});
