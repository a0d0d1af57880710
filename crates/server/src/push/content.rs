//! What a push says: one message's notification, the same for FCM and Web Push.
//!
//! The privacy rules live here, in the one place every push is made: a push names the
//! sender and carries at most the text of the message it is about (never for an encrypted
//! message), its ids and its conversation's tag; nothing of any other message or
//! conversation. The brief's shape: title "New message from NAME", body the text, `data`
//! all strings (`type`, `messageId`, `senderName`, `clickAction`).

use std::collections::BTreeMap;

/// A body longer than this many characters is cut (with an ellipsis): lock screens show two
/// or three lines, and FCM and Web Push payloads are limited to 4 KiB.
pub const BODY_MAX_CHARS: usize = 200;

/// Where a tap on the notification leads (the brief's `clickAction`).
pub const CLICK_ACTION: &str = "/messages";

/// A new message, as the push hand-off receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    pub message_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub content: String,
    pub is_encrypted: bool,
    /// The conversation the message belongs to, where the message names one (groups);
    /// otherwise the direct conversation with the sender.
    pub conversation_id: Option<String>,
}

/// One notification, ready for either sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushContent {
    pub title: String,
    /// `None` for an encrypted message: the push says who wrote, never what.
    pub body: Option<String>,
    /// One notification per conversation: a later push with the same tag replaces the
    /// earlier one on the device (Android `tag`, APNs `thread-id`, Web Push `tag`).
    pub tag: String,
    /// The brief's `data`, every value a string (FCM refuses anything else).
    pub data: BTreeMap<&'static str, String>,
}

impl PushContent {
    pub fn for_message(m: &PushMessage) -> PushContent {
        let tag = match &m.conversation_id {
            Some(id) => format!("conversation:{id}"),
            None => format!("direct:{}", m.sender_id),
        };
        let mut data = BTreeMap::from([
            ("type", "new_message".to_string()),
            ("messageId", m.message_id.clone()),
            ("senderId", m.sender_id.clone()),
            ("senderName", m.sender_name.clone()),
            ("clickAction", CLICK_ACTION.to_string()),
        ]);
        if let Some(id) = &m.conversation_id {
            data.insert("conversationId", id.clone());
        }
        PushContent {
            title: format!("New message from {}", m.sender_name),
            body: (!m.is_encrypted).then(|| preview(&m.content)),
            tag,
            data,
        }
    }

    /// The Web Push payload (what the service worker's `push` event reads as JSON).
    pub fn web_payload(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "title": self.title,
            "tag": self.tag,
            "data": self.data,
        });
        if let Some(body) = &self.body {
            v["body"] = body.clone().into();
        }
        v
    }
}

/// The text as a lock screen shows it: one line, at most [`BODY_MAX_CHARS`] characters.
fn preview(text: &str) -> String {
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if line.chars().count() <= BODY_MAX_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(BODY_MAX_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: &str, is_encrypted: bool) -> PushMessage {
        PushMessage {
            message_id: "m1".into(),
            sender_id: "u1".into(),
            sender_name: "Ada".into(),
            content: content.into(),
            is_encrypted,
            conversation_id: None,
        }
    }

    #[test]
    fn the_brief_shape_with_a_tag_per_conversation() {
        let c = PushContent::for_message(&message("Hello! How are you?", false));
        assert_eq!(c.title, "New message from Ada");
        assert_eq!(c.body.as_deref(), Some("Hello! How are you?"));
        assert_eq!(c.tag, "direct:u1");
        assert_eq!(c.data["type"], "new_message");
        assert_eq!(c.data["messageId"], "m1");
        assert_eq!(c.data["senderName"], "Ada");
        assert_eq!(c.data["clickAction"], "/messages");
        let mut group = message("hi", false);
        group.conversation_id = Some("c9".into());
        let g = PushContent::for_message(&group);
        assert_eq!(g.tag, "conversation:c9");
        assert_eq!(g.data["conversationId"], "c9");
    }

    #[test]
    fn an_encrypted_message_carries_no_content() {
        let secret = "ciphertext-or-anything";
        let c = PushContent::for_message(&message(secret, true));
        assert_eq!(c.title, "New message from Ada");
        assert_eq!(c.body, None);
        let payload = c.web_payload().to_string();
        assert!(!payload.contains(secret), "{payload}");
        assert!(c.data.values().all(|v| !v.contains(secret)));
    }

    #[test]
    fn a_long_body_is_cut_to_one_line() {
        let long = format!("first\nline {}", "word ".repeat(100));
        let body = PushContent::for_message(&message(&long, false))
            .body
            .unwrap();
        assert!(body.chars().count() <= BODY_MAX_CHARS && body.chars().count() > 190);
        assert!(body.starts_with("first line word"));
        assert!(body.ends_with('…'));
        assert!(!body.contains('\n'));
    }
}
