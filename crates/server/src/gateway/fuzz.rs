//! Property tests of the decoding of every client event payload (docs/operations.md,
//! "Fuzzing"): arbitrary JSON (and arbitrary strings in the fields a payload should have)
//! never panics the decoder or the domain's parsers; a payload is either refused with
//! `VALIDATION_FAILED` or becomes valid domain values.

use nexus_protocol::events::{self, EditMessage, MessageRef, NewMessage, Typing};
use proptest::prelude::*;
use serde_json::Value;

use super::handlers::decode;
use crate::domain::{ClientMessageId, MessageBody, MessageId, UserId};
use crate::error::DomainError;

/// Any JSON value, nested a few levels, with strings of any characters.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC*".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof!["receiverId", "content", "tempId", "messageId", "\\PC{0,12}"],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every client event with a payload, decoded and parsed as its handler does.
fn handle(event: &str, data: Option<Value>) -> Result<(), DomainError> {
    match event {
        events::NEW_MESSAGE => {
            let m: NewMessage = decode(event, data)?;
            match (&m.receiver_id, &m.conversation_id) {
                (Some(r), None) => {
                    UserId::parse(r)?;
                }
                (None, Some(c)) => {
                    crate::domain::ConversationId::parse(c)?;
                }
                _ => return Err(DomainError::Validation("one target".into())),
            }
            MessageBody::parse(&m.content)?;
            m.temp_id
                .as_deref()
                .map(ClientMessageId::parse)
                .transpose()?;
        }
        events::EDIT_MESSAGE => {
            let e: EditMessage = decode(event, data)?;
            MessageId::parse(&e.message_id)?;
            MessageBody::parse(&e.content)?;
        }
        events::MESSAGE_DELIVERED | events::MESSAGE_READ | events::DELETE_MESSAGE => {
            let r: MessageRef = decode(event, data)?;
            MessageId::parse(&r.message_id)?;
        }
        events::TYPING_START | events::TYPING_STOP => {
            let t: Typing = decode(event, data)?;
            match (&t.receiver_id, &t.conversation_id) {
                (Some(r), None) => {
                    UserId::parse(r)?;
                }
                (None, Some(c)) => {
                    crate::domain::ConversationId::parse(c)?;
                }
                _ => return Err(DomainError::Validation("one target".into())),
            }
        }
        _ => unreachable!(),
    }
    Ok(())
}

const EVENTS: &[&str] = &[
    events::NEW_MESSAGE,
    events::EDIT_MESSAGE,
    events::MESSAGE_DELIVERED,
    events::MESSAGE_READ,
    events::DELETE_MESSAGE,
    events::TYPING_START,
    events::TYPING_STOP,
];

fn refused_as_validation(r: Result<(), DomainError>) -> bool {
    matches!(r, Ok(()) | Err(DomainError::Validation(_)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// 2,000 arbitrary JSON payloads for each of the 7 events (14,000 inputs a run).
    #[test]
    fn any_json_payload_is_decoded_or_refused_as_invalid(v in json(), absent in any::<bool>()) {
        for event in EVENTS {
            let data = if absent { None } else { Some(v.clone()) };
            prop_assert!(refused_as_validation(handle(event, data)), "{event}");
        }
    }

    /// Well-shaped payloads whose strings are anything (NUL, bidi, huge, surrogates).
    #[test]
    fn any_strings_in_well_shaped_payloads_are_parsed_or_refused(
        receiver in any::<String>(), content in any::<String>(), temp in any::<String>(),
    ) {
        let payloads = [
            serde_json::json!({"receiverId": receiver, "content": content, "tempId": temp}),
            serde_json::json!({"messageId": receiver, "content": content}),
            serde_json::json!({"messageId": content}),
            serde_json::json!({"receiverId": content}),
        ];
        for event in EVENTS {
            for p in &payloads {
                prop_assert!(refused_as_validation(handle(event, Some(p.clone()))), "{event}");
            }
        }
    }
}
