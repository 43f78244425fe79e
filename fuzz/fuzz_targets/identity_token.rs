//! Any bytes as a request carrying an identity token, and as the token itself: taking the token
//! out of the request, screening it and checking it answer or refuse, never panic. No token made
//! of fuzz input verifies against the key below (a public key whose private half was thrown
//! away), so the check can only refuse.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regate_core::identity::{check, screen, take_token, IssuerKeys};

const JWKS: &str = r#"{"keys": [{"alg":"RS256","e":"AQAB","kid":"fuzz-key","kty":"RSA","n":"3JCRqsMcW07hfGWWLtMm4dzaEssMiWZgSlBuWOVo2wRvEfjZMDrKJHUuup_1Pamffxglilqb3jAK5QXWcxhoGGMEowHu_nMwdOQGlwXoibx6oID2OIaStnBImlHMzBHWCF6e1Ctd2by-_NBJMhyfObfu6R1hTi_H-ZcfdTMrZpMDFgtd-p5jhybiXxgUSOgLzdTKaopvflSaTtd3kfVHZ1a60DB-NlpTCkye426vOyEl52ODO-l4qmTx3GV5qp2qnLXaFaan_6fzjtjL-dpUNchLk0iVBkC2nuVZwlUpamwJfj2ltHiMNY4Iuy0Lc5CMboGJdbx2Iz20XFhTwKzVpQ"}]}"#;

fn keys() -> &'static IssuerKeys {
    static KEYS: OnceLock<IssuerKeys> = OnceLock::new();
    KEYS.get_or_init(|| IssuerKeys::from_jwks(JWKS.as_bytes()).expect("the fixed JWKS reads"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = take_token(&request);
    }
    let token = String::from_utf8_lossy(data);
    if let Ok(screened) = screen(&token, |_| true) {
        let verdict = check(&token, &screened, "regate", keys(), 1_800_000_000);
        assert!(verdict.is_err(), "a fuzzed token verified: {token:?}");
    }
});
