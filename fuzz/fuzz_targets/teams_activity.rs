//! Any bytes as a Teams activity and any text as its Authorization header: the activity parser
//! returns an activity or a named error, and the token check returns Ok or a named refusal,
//! never a panic. No token made of fuzz input verifies against the Bot Framework key below
//! (a public key whose private half was thrown away), so the check can only refuse.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regate_chat::teams::activity::{envelope, parse, Envelope};
use regate_chat::teams::auth::{check, SigningKeys};

const JWKS: &str = r#"{"keys": [{"alg":"RS256","e":"AQAB","endorsements":["msteams"],"kid":"fuzz-key","kty":"RSA","n":"3JCRqsMcW07hfGWWLtMm4dzaEssMiWZgSlBuWOVo2wRvEfjZMDrKJHUuup_1Pamffxglilqb3jAK5QXWcxhoGGMEowHu_nMwdOQGlwXoibx6oID2OIaStnBImlHMzBHWCF6e1Ctd2by-_NBJMhyfObfu6R1hTi_H-ZcfdTMrZpMDFgtd-p5jhybiXxgUSOgLzdTKaopvflSaTtd3kfVHZ1a60DB-NlpTCkye426vOyEl52ODO-l4qmTx3GV5qp2qnLXaFaan_6fzjtjL-dpUNchLk0iVBkC2nuVZwlUpamwJfj2ltHiMNY4Iuy0Lc5CMboGJdbx2Iz20XFhTwKzVpQ"}]}"#;

fn keys() -> &'static SigningKeys {
    static KEYS: OnceLock<SigningKeys> = OnceLock::new();
    KEYS.get_or_init(|| SigningKeys::from_jwks(JWKS.as_bytes()).expect("the fixed JWKS reads"))
}

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let claimed = envelope(data).unwrap_or(Envelope {
        channel_id: "msteams".into(),
        service_url: "https://smba.trafficmanager.net/amer/t/".into(),
    });
    let text = String::from_utf8_lossy(data);
    for authorization in [text.to_string(), format!("Bearer {text}")] {
        let verdict = check(Some(&authorization), &claimed, "app", keys());
        assert!(verdict.is_err(), "a fuzzed token verified: {authorization:?}");
    }
});
