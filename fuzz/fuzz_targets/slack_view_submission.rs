//! Any reason text and any view payload around it: parsing a view submission returns an
//! interaction or a named error and never panics, and a well-formed submission keeps its
//! request id and its trimmed reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regate_chat::slack::interaction::{form_body, parse, reason_payload, Interaction};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let text = String::from_utf8_lossy(data);
    let (request_id, reason) = text.split_once('\n').unwrap_or(("chg-1", &text));
    if request_id.is_empty() {
        return;
    }
    let body = form_body(&reason_payload("U1", request_id, reason));
    if let Ok(Interaction::ReasonSubmitted { request_id: id, reason: parsed, .. }) = parse(body.as_bytes()) {
        assert_eq!(id, request_id);
        assert_eq!(parsed, reason.trim());
    }
});
