//! The web client's wire types, generated from this crate: `web/src/wire/protocol.ts` is
//! rendered here with `ts-rs` (the derives exist only in this crate's test build, so no
//! other build pays for them). The test fails when the committed file differs from what
//! the Rust types say; `NEXUS_UPDATE_WIRE_TYPES=1 cargo test -p nexus-protocol` rewrites it.

use std::path::PathBuf;

use ts_rs::{Config, TS};

use crate::events::*;
use crate::*;

const HEADER: &str = "\
// Generated from crates/protocol by `NEXUS_UPDATE_WIRE_TYPES=1 cargo test -p nexus-protocol`.
// Do not edit: `cargo test` fails when this file no longer matches the Rust types.
/* eslint-disable */
";

/// Every client → server event and the payload it takes; the acknowledgement answers with
/// the event's result or an `ErrorEvent`.
const CLIENT_EVENTS: &[(&str, &str, &str)] = &[
    (NEW_MESSAGE, "NewMessage", "MessageSent"),
    (MESSAGE_DELIVERED, "MessageRef", "DeliveredUpdate"),
    (MESSAGE_READ, "MessageRef", "ReadUpdate"),
    (EDIT_MESSAGE, "EditMessage", "MessageEdited"),
    (DELETE_MESSAGE, "MessageRef", "MessageDeleted"),
    (TYPING_START, "Typing", "UserTyping"),
    (TYPING_STOP, "Typing", "UserTyping"),
    (GET_ONLINE_USERS, "", "OnlineUsers"),
    (HEALTH_CHECK, "", "HealthResponse"),
    (
        MARK_CONVERSATION_READ,
        "MarkConversationRead",
        "ConversationRead",
    ),
];

/// Every server → client event and its payload.
const SERVER_EVENTS: &[(&str, &str)] = &[
    (CONNECTION_SUCCESS, "ConnectionSuccess"),
    (MESSAGE_SENT, "MessageSent"),
    (NEW_MESSAGE, "IncomingMessage"),
    (MESSAGE_DELIVERED_UPDATE, "DeliveredUpdate"),
    (MESSAGE_READ_UPDATE, "ReadUpdate"),
    (MESSAGE_EDITED, "MessageEdited"),
    (MESSAGE_DELETED, "MessageDeleted"),
    (USER_TYPING, "UserTyping"),
    (ONLINE_USERS, "OnlineUsers"),
    (USER_PRESENCE_UPDATE, "PresenceUpdate"),
    (HEALTH_RESPONSE, "HealthResponse"),
    (ERROR, "ErrorEvent"),
    (RATE_LIMIT_EXCEEDED, "RateLimitExceeded"),
    (FORCE_DISCONNECT, "ForceDisconnect"),
    (RESYNC, "Resync"),
    (CONVERSATION_UPDATED, "ConversationUpdated"),
    (CONVERSATION_READ, "ConversationRead"),
];

fn render() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(HEADER);
    macro_rules! declare {
        ($($t:ty),* $(,)?) => {$(
            out.push_str("\nexport ");
            out.push_str(&<$t as TS>::decl(&cfg));
            out.push('\n');
        )*};
    }
    declare!(
        User,
        AuthResponse,
        UserWithDevices,
        ReadReceipt,
        DeliveryReceipt,
        Message,
        MessagePage,
        Conversation,
        ConversationType,
        MemberRole,
        ConversationMember,
        ConversationInfo,
        ConversationSummary,
        ConversationPage,
        ChangeType,
        SyncEvent,
        SyncPage,
        HttpError,
        ErrorCode,
        NewMessage,
        MessageRef,
        EditMessage,
        Typing,
        ConnectionSuccess,
        MessageSent,
        IncomingMessage,
        DeliveredUpdate,
        ReadUpdate,
        MessageEdited,
        MessageDeleted,
        UserTyping,
        OnlineUsers,
        PresenceStatus,
        PresenceUpdate,
        HealthResponse,
        ErrorEvent,
        RateLimitExceeded,
        ForceDisconnect,
        Resync,
        MarkConversationRead,
        ConversationRead,
        ConversationUpdated,
    );
    out.push_str(&format!(
        "\nexport const NAMESPACE = {NAMESPACE:?};\n\nexport const DELETED_CONTENT = {DELETED_CONTENT:?};\n"
    ));
    out.push_str("\n/** Client → server events: payload and acknowledgement answer. */\nexport interface ClientToServerEvents {\n");
    for (name, payload, answer) in CLIENT_EVENTS {
        let ack = format!("ack: (answer: {answer} | ErrorEvent) => void");
        if payload.is_empty() {
            out.push_str(&format!("  {name}: ({ack}) => void;\n"));
        } else {
            out.push_str(&format!("  {name}: (payload: {payload}, {ack}) => void;\n"));
        }
    }
    out.push_str("}\n\n/** Server → client events and their payloads. */\nexport interface ServerToClientEvents {\n");
    for (name, payload) in SERVER_EVENTS {
        out.push_str(&format!("  {name}: (payload: {payload}) => void;\n"));
    }
    out.push_str("}\n");
    out
}

#[test]
fn the_web_clients_wire_types_are_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web/src/wire/protocol.ts");
    let expected = render();
    if std::env::var_os("NEXUS_UPDATE_WIRE_TYPES").is_some() {
        std::fs::write(&path, &expected).expect("write web/src/wire/protocol.ts");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "web/src/wire/protocol.ts is stale: the wire types in crates/protocol changed. \
         Regenerate it with `NEXUS_UPDATE_WIRE_TYPES=1 cargo test -p nexus-protocol` and \
         commit the result (the web client is type-checked against it)."
    );
}
