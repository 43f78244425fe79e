//! Property tests of what anyone can send to the callback: the same parsers the fuzz targets
//! cover (fuzz/), run on the stable toolchain by `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::DateTime;
use proptest::prelude::*;
use regate_chat::slack::interaction::{
    click_payload, form_body, parse, reason_payload, Interaction, InteractionError,
};
use regate_chat::slack::signature::{sign, verify_at};
use regate_core::Choice;
use secrecy::SecretString;

const NOW: i64 = 1_700_000_000;

fn secret() -> SecretString {
    SecretString::from("property-signing-secret")
}

proptest! {
    #[test]
    fn any_bytes_parse_to_an_interaction_or_a_named_error(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        match parse(&body) {
            Ok(_) | Err(InteractionError::Malformed(_) | InteractionError::UnknownAction(_) | InteractionError::UnsupportedType(_)) => {}
        }
    }

    #[test]
    fn a_click_keeps_its_request_id_and_choice(id in "[A-Za-z0-9_.:-]{1,128}", approve in any::<bool>()) {
        let action = if approve { "approve" } else { "reject" };
        let body = form_body(&click_payload("U1", action, &id, "C1", "1.1"));
        match parse(body.as_bytes()).unwrap() {
            Interaction::Vote { request_id, choice, voter } => {
                prop_assert_eq!(request_id, id);
                prop_assert_eq!(choice, if approve { Choice::Approve } else { Choice::Reject });
                prop_assert_eq!(voter.user_id, "U1");
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn a_submitted_reason_comes_back_trimmed(id in "[a-z0-9-]{1,40}", reason in "\\PC{0,500}") {
        let body = form_body(&reason_payload("U1", &id, &reason));
        match parse(body.as_bytes()).unwrap() {
            Interaction::ReasonSubmitted { request_id, reason: parsed, .. } => {
                prop_assert_eq!(request_id, id);
                prop_assert_eq!(parsed, reason.trim());
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn only_the_real_signature_within_five_minutes_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        skew in -600i64..600,
        forged in "v0=[0-9a-f]{64}",
    ) {
        let now = DateTime::from_timestamp(NOW, 0).unwrap();
        let timestamp = (NOW + skew).to_string();
        let genuine = sign(&secret(), &timestamp, &body);
        let verdict = verify_at(&secret(), Some(&timestamp), Some(&genuine), &body, now);
        prop_assert_eq!(verdict.is_ok(), skew.abs() <= 300, "skew {}", skew);
        if forged != genuine {
            prop_assert!(verify_at(&secret(), Some(&timestamp), Some(&forged), &body, now).is_err());
        }
    }
}
