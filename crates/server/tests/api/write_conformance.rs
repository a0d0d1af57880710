//! The write side's conformance: the same batches of commands go through each engine's
//! implementation of the seam (`nexus::store::writes`), which run different SQL: the SQLite
//! file (rusqlite, a statement per row), the in-memory SQLite database (sqlx, multi-row
//! statements) and PostgreSQL (arrays, a statement per batch). Each must give the same
//! answers and leave the same rows: messages, edit histories, receipts, every user's feed
//! with its `seq`s, conversations, member pointers and unread counts, read back through the
//! store with generated ids and times normalised.

use std::collections::{BTreeMap, HashMap};

use nexus::domain::{
    ClientMessageId, ConversationId, DisplayName, Email, GroupTitle, MessageBody, MessageId, UserId,
};
use nexus::messaging::writer::apply_batch;
use nexus::messaging::{Command, Outcome, ReceiptKind};
use nexus::store::writes::{
    ChangeRow, ConversationState, LockOrder, NewMessage, WriteConnection, Writes,
};
use nexus::store::Store;
use nexus_protocol::ChangeType;

use crate::helpers::{Backend, TestDb};

/// The users, with ids fixed so that every engine stores the same ones.
const USERS: [(&str, &str); 4] = [
    ("ada", "00000000-0000-4000-8000-00000000000a"),
    ("bob", "00000000-0000-4000-8000-00000000000b"),
    ("cy", "00000000-0000-4000-8000-00000000000c"),
    ("dee", "00000000-0000-4000-8000-00000000000d"),
];

/// One command of the script. Users by name; messages and groups by the name the script
/// gave them when they were created; a direct conversation as `"ada+bob"`.
#[derive(Clone, Copy)]
enum Cmd {
    /// (from, to, text, tempId, name of the message)
    Send(
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
    /// (from, conversation, text, tempId, name of the message)
    Post(
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
    /// (actor, title, members, name of the group)
    Group(
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static str,
    ),
    Edit(&'static str, &'static str, &'static str),
    Delete(&'static str, &'static str),
    Receipt(&'static str, &'static str, ReceiptKind),
    /// (reader, conversation, up to message)
    MarkRead(&'static str, &'static str, &'static str),
    Add(&'static str, &'static str, &'static [&'static str]),
    Remove(&'static str, &'static str, &'static str),
    Rename(&'static str, &'static str, &'static str),
}

enum Step {
    /// Commands applied as one batch (one transaction) by the writer's batch function.
    Batch(Vec<Cmd>),
    /// A batch written through the seam directly whose second half breaks the change log's
    /// key (a `seq` of `ada` that is taken): it must fail and leave nothing, not even its
    /// message, stored under tempId `t-fail` in `ada+bob`.
    FailHalfway,
}

fn script() -> Vec<Step> {
    use Cmd::*;
    use ReceiptKind::{Delivered, Read};
    vec![
        Step::Batch(vec![
            Send("ada", "bob", "hi bob", Some("t-1"), "m1"),
            Send("bob", "ada", "hi ada", Some("t-1"), "m2"),
            Send("ada", "cy", "hello cy", None, "m3"),
            Group("ada", "team", &["bob", "cy"], "g"),
        ]),
        Step::Batch(vec![
            Post("ada", "g", "hello team", Some("t-2"), "m4"),
            Post("bob", "g", "hi all", None, "m5"),
            // A retry of an earlier batch's send, and the same tempId twice in one batch.
            Send("ada", "bob", "hi bob", Some("t-1"), "m1"),
            Send("ada", "bob", "once", Some("t-3"), "m6"),
            Send("ada", "bob", "once", Some("t-3"), "m6"),
            Post("cy", "ada+cy", "hello ada", None, "m7"),
        ]),
        Step::Batch(vec![
            Edit("ada", "m1", "hi bob!"),
            Edit("ada", "m1", "hi bob!!"),
            Edit("bob", "m1", "not yours"),
            Receipt("bob", "m1", Delivered),
            Receipt("bob", "m1", Read),
            Receipt("bob", "m1", Read),
            Receipt("cy", "m4", Delivered),
            MarkRead("cy", "g", "m5"),
            MarkRead("ada", "ada+bob", "m2"),
        ]),
        Step::Batch(vec![
            Delete("ada", "m3"),
            Delete("ada", "m3"),
            Delete("ada", "m1"),
            Edit("bob", "m2", "hi ada!"),
            // Receipts stored by earlier batches (one by the read mark): nothing new.
            Receipt("cy", "m4", Delivered),
            Receipt("cy", "m4", Read),
            Receipt("bob", "m4", Read),
            Add("ada", "g", &["dee"]),
            Rename("ada", "g", "team two"),
            Post("dee", "g", "new here", Some("t-4"), "m8"),
        ]),
        Step::FailHalfway,
        Step::Batch(vec![
            // What the writer does after a failed batch: its commands again.
            Send("ada", "bob", "after the failure", Some("t-fail"), "m9"),
            Remove("ada", "g", "cy"),
            Post("bob", "g", "cy is gone", None, "m10"),
        ]),
        Step::Batch(vec![
            MarkRead("bob", "ada+bob", "m9"),
            Receipt("dee", "m10", Read),
            MarkRead("cy", "g", "m10"),
        ]),
    ]
}

/// One engine's run: its store, the writer's connection, and the names of what it created.
struct Run {
    store: Store,
    /// The writer's connection, kept for the whole script as the writer keeps it.
    conn: Box<dyn WriteConnection>,
    /// Script name → id (users, messages, groups) and back.
    ids: HashMap<String, String>,
    names: HashMap<String, String>,
    _db: Option<TestDb>,
}

impl Run {
    async fn start(store: Store, db: Option<TestDb>) -> Run {
        let mut run = Run {
            conn: store.write_connection().await.unwrap(),
            store,
            ids: HashMap::new(),
            names: HashMap::new(),
            _db: db,
        };
        for (name, id) in USERS {
            let display = DisplayName::parse(name).unwrap();
            let email = Email::parse(&format!("{name}@example.com")).unwrap();
            run.store
                .create_user(UserId::parse(id).unwrap(), &display, &email, "hash", 0)
                .await
                .unwrap();
            run.name(name, id);
        }
        run
    }

    fn name(&mut self, name: &str, id: &str) {
        self.ids.insert(name.to_string(), id.to_string());
        self.names.insert(id.to_string(), name.to_string());
    }

    fn id(&self, name: &str) -> String {
        self.ids
            .get(name)
            .unwrap_or_else(|| panic!("nothing named {name} yet"))
            .clone()
    }

    fn user(&self, name: &str) -> UserId {
        UserId::parse(&self.id(name)).unwrap()
    }

    /// A conversation: a group by name, `a+b` for the direct one of two users.
    async fn conversation(&self, name: &str) -> String {
        match name.split_once('+') {
            Some((a, b)) => self
                .store
                .direct_conversation(&self.id(a), &self.id(b))
                .await
                .unwrap()
                .expect("no such direct conversation"),
            None => self.id(name),
        }
    }

    /// The name of an id (`""` stays `""`), `?` for one the script never named.
    fn of(&self, id: &str) -> String {
        if id.is_empty() {
            return String::new();
        }
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("?{id}"))
    }

    async fn command(&self, cmd: Cmd) -> Command {
        let body = |t: &str| MessageBody::parse(t).unwrap();
        let cid = |c: Option<&str>| c.map(|c| ClientMessageId::parse(c).unwrap());
        let message = |m: &str| MessageId::parse(&self.id(m)).unwrap();
        let title = |t: &str| GroupTitle::parse(t).unwrap();
        match cmd {
            Cmd::Send(from, to, text, c, _) => Command::Send {
                sender: self.user(from),
                receiver: self.user(to),
                body: body(text),
                client_message_id: cid(c),
            },
            Cmd::Post(from, conv, text, c, _) => Command::Post {
                sender: self.user(from),
                conversation: ConversationId::parse(&self.conversation(conv).await).unwrap(),
                body: body(text),
                client_message_id: cid(c),
            },
            Cmd::Group(actor, t, members, _) => Command::CreateGroup {
                actor: self.user(actor),
                title: title(t),
                members: members.iter().map(|m| self.user(m)).collect(),
                max_members: 256,
            },
            Cmd::Edit(actor, m, text) => Command::Edit {
                actor: self.user(actor),
                message: message(m),
                body: body(text),
            },
            Cmd::Delete(actor, m) => Command::Delete {
                actor: self.user(actor),
                message: message(m),
            },
            Cmd::Receipt(actor, m, kind) => Command::Receipt {
                actor: self.user(actor),
                message: message(m),
                kind,
            },
            Cmd::MarkRead(actor, conv, m) => Command::MarkRead {
                actor: self.user(actor),
                conversation: ConversationId::parse(&self.conversation(conv).await).unwrap(),
                up_to: message(m),
            },
            Cmd::Add(actor, g, users) => Command::AddMembers {
                actor: self.user(actor),
                conversation: ConversationId::parse(&self.id(g)).unwrap(),
                users: users.iter().map(|u| self.user(u)).collect(),
                max_members: 256,
            },
            Cmd::Remove(actor, g, user) => Command::RemoveMember {
                actor: self.user(actor),
                conversation: ConversationId::parse(&self.id(g)).unwrap(),
                user: self.user(user),
            },
            Cmd::Rename(actor, g, t) => Command::Rename {
                actor: self.user(actor),
                conversation: ConversationId::parse(&self.id(g)).unwrap(),
                title: title(t),
            },
        }
    }

    /// Runs the script; every answer, normalised, one line each.
    async fn play(&mut self) -> Vec<String> {
        let mut answers = Vec::new();
        for (n, step) in script().into_iter().enumerate() {
            match step {
                Step::Batch(cmds) => {
                    let mut commands = Vec::new();
                    for c in &cmds {
                        commands.push(self.command(*c).await);
                    }
                    let refs: Vec<&Command> = commands.iter().collect();
                    let (results, commit) = apply_batch(&self.store, self.conn.as_mut(), &refs)
                        .await
                        .unwrap_or_else(|e| panic!("batch {n} failed: {e}"));
                    durable(commit).await;
                    for (c, result) in cmds.iter().zip(results) {
                        let line = self.answer(*c, result);
                        answers.push(format!("batch {n}: {line}"));
                    }
                }
                Step::FailHalfway => self.fail_halfway().await,
            }
            self.name_direct_conversations().await;
        }
        answers
    }

    fn answer(&mut self, cmd: Cmd, result: Result<Outcome, nexus::error::DomainError>) -> String {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => return format!("refused {:?}", e.code()),
        };
        let audience = |run: &Run, a: &[(String, i64)]| {
            a.iter()
                .map(|(u, seq)| format!("{}#{seq}", run.of(u)))
                .collect::<Vec<_>>()
                .join(",")
        };
        match outcome {
            Outcome::Sent(s) => {
                if let (Cmd::Send(.., name) | Cmd::Post(.., name), false) =
                    (cmd, self.names.contains_key(&s.message_id))
                {
                    self.name(name, &s.message_id);
                }
                format!(
                    "sent {} duplicate={} seq={} to {} stored={}",
                    self.of(&s.message_id),
                    s.duplicate,
                    s.sender_seq,
                    audience(self, &s.audience),
                    s.message.is_some()
                )
            }
            Outcome::Edited {
                message_id,
                content,
                audience: a,
                ..
            } => format!(
                "edited {} to {content:?} for {}",
                self.of(&message_id),
                audience(self, &a)
            ),
            Outcome::Deleted {
                message_id,
                audience: a,
                ..
            } => format!(
                "deleted {} for {}",
                self.of(&message_id),
                audience(self, &a)
            ),
            Outcome::Receipt {
                kind,
                message_id,
                receiver_id,
                seqs,
                ..
            } => format!(
                "receipt {kind:?} of {} by {} seqs={:?}",
                self.of(&message_id),
                self.of(&receiver_id),
                seqs.map(|s| (s.sender, s.receiver))
            ),
            Outcome::Conversation(change) => {
                if let Cmd::Group(.., name) = cmd {
                    self.name(name, &change.conversation.id);
                }
                format!(
                    "{:?} {} by {} for {} members {}",
                    change.kind,
                    self.of(&change.conversation.id),
                    self.of(&change.actor),
                    audience(self, &change.audience),
                    change
                        .conversation
                        .current_ids()
                        .iter()
                        .map(|u| self.of(u))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            Outcome::MarkedRead(r) => format!(
                "read {} by {} up to {} seq={:?} marked {}",
                self.conversation_name(&r.conversation_id),
                self.of(&r.reader),
                self.of(&r.up_to),
                r.reader_seq,
                r.marked
                    .iter()
                    .map(|(m, s, seq)| format!("{}/{}#{seq:?}", self.of(m), self.of(s)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// Names the direct conversations that exist `a+b` (their ids are the engine's).
    async fn name_direct_conversations(&mut self) {
        for (i, (a, _)) in USERS.iter().enumerate() {
            for (b, _) in &USERS[i + 1..] {
                let found = self
                    .store
                    .direct_conversation(&self.id(a), &self.id(b))
                    .await
                    .unwrap();
                if let Some(id) = found {
                    self.name(&format!("{a}+{b}"), &id);
                }
            }
        }
    }

    fn conversation_name(&self, id: &str) -> String {
        self.of(id)
    }

    async fn fail_halfway(&mut self) {
        let (ada, bob) = (self.id("ada"), self.id("bob"));
        let conversation = self.conversation("ada+bob").await;
        let seq_before = self.store.current_seq(self.user("ada")).await.unwrap();
        {
            let mut tx = self.conn.begin().await.unwrap();
            let (locked, known) = tx
                .lock_and_load(
                    &LockOrder::new([ada.clone(), bob.clone()]),
                    &[(ada.clone(), "t-fail".into())],
                )
                .await
                .unwrap();
            assert!(known.is_empty());
            let (a, b) = (locked[&ada].seq, locked[&bob].seq);
            let id = MessageId::new().as_string();
            let message = NewMessage {
                id: id.clone(),
                conversation_id: conversation.clone(),
                sender_id: ada.clone(),
                receiver_id: Some(bob.clone()),
                content: "never stored".into(),
                created_at: 1,
                client_message_id: Some("t-fail".into()),
                sender_seq: a + 1,
                receiver_seq: b + 1,
            };
            let change = |user: &str, seq: i64| ChangeRow {
                user_id: user.to_string(),
                seq,
                kind: ChangeType::MessageCreated,
                message_id: id.clone(),
                conversation_id: Some(conversation.clone()),
                actor_id: ada.clone(),
                at: 1,
            };
            // Bob's entry is fine; ada's reuses her latest `seq`.
            let changes = [change(&bob, b + 1), change(&ada, a)];
            let counters = BTreeMap::from([(ada.clone(), a + 1), (bob.clone(), b + 1)]);
            let conversations: [ConversationState; 0] = [];
            let failed = tx
                .write(&Writes {
                    conversations: &conversations,
                    members: &[],
                    messages: std::slice::from_ref(&message),
                    changes: &changes,
                    edits: &[],
                    deletes: &[],
                    tombstone: "",
                    receipts: &[],
                    counters: &counters,
                    now: 1,
                })
                .await;
            assert!(
                failed.is_err(),
                "a batch breaking the change log's key was written"
            );
            assert!(!failed.unwrap_err().is_unavailable());
            // Dropped: rolled back.
        }
        assert_eq!(
            self.store.current_seq(self.user("ada")).await.unwrap(),
            seq_before,
            "the failed batch moved a counter"
        );
    }

    /// Every row the script left, normalised, one line each.
    async fn rows(&self) -> Vec<String> {
        let store = &self.store;
        let mut conversations = Vec::new();
        for (_, id) in USERS {
            for l in store.listed_conversations(id, None, 100).await.unwrap() {
                conversations.push(l.conversation_id);
            }
        }
        conversations.sort();
        conversations.dedup();
        // Positions are the engine's (PostgreSQL's sequence keeps a failed batch's numbers):
        // each becomes the name of the message at it.
        let mut at = HashMap::from([(0, "nothing".to_string())]);
        let mut messages = Vec::new();
        for c in &conversations {
            for m in store.conversation_page(c, None, None, 1000).await.unwrap() {
                at.insert(m.row.pos, self.of(&m.row.id));
                messages.push(m);
            }
        }
        let pos = |p: i64| at.get(&p).cloned().unwrap_or_else(|| format!("?{p}"));
        let mut lines = Vec::new();
        for (user, id) in USERS {
            let me = UserId::parse(id).unwrap();
            lines.push(format!(
                "{user} seq {}",
                store.current_seq(me).await.unwrap()
            ));
            for c in store.changes_since(me, 0, 1000).await.unwrap() {
                lines.push(format!(
                    "{user} feed #{} {} {} in {} by {}",
                    c.seq,
                    c.kind,
                    self.of(&c.message_id),
                    c.conversation_id
                        .as_deref()
                        .map(|c| self.conversation_name(c))
                        .unwrap_or_default(),
                    self.of(&c.actor_id)
                ));
            }
            for l in store.listed_conversations(id, None, 100).await.unwrap() {
                lines.push(format!(
                    "{user} lists {} unread {} latest {}",
                    self.conversation_name(&l.conversation_id),
                    l.unread,
                    pos(l.last_pos)
                ));
            }
        }
        messages.sort_by_key(|m| self.of(&m.row.id));
        for m in &messages {
            let r = &m.row;
            let users = |list: &[(String, i64)]| {
                let mut names: Vec<String> = list.iter().map(|(u, _)| self.of(u)).collect();
                names.sort();
                names.join(",")
            };
            let history: Vec<String> = store
                .edit_history(MessageId::parse(&r.id).unwrap())
                .await
                .unwrap()
                .into_iter()
                .map(|(content, _)| content)
                .collect();
            lines.push(format!(
                "message {} in {} from {} to {} {:?} tempId {:?} seqs {}/{} edited {} deleted {} \
                 read by [{}] delivered to [{}] history {history:?}",
                self.of(&r.id),
                self.conversation_name(&r.conversation_id),
                self.of(&r.sender_id),
                r.receiver_id
                    .as_deref()
                    .map(|u| self.of(u))
                    .unwrap_or_default(),
                r.content,
                r.client_message_id,
                r.sender_seq,
                r.receiver_seq,
                r.edited_at.is_some(),
                r.deleted_at.is_some(),
                users(&m.reads),
                users(&m.deliveries),
            ));
        }
        let views = store.conversation_views(&conversations).await.unwrap();
        let mut views: Vec<_> = views.into_values().collect();
        views.sort_by_key(|v| self.conversation_name(&v.id));
        for v in views {
            lines.push(format!(
                "conversation {} {} {:?} latest {}",
                self.conversation_name(&v.id),
                v.kind,
                v.title,
                pos(v.last_pos)
            ));
            for m in &v.members {
                lines.push(format!(
                    "  member {} {} latest {} read up to {} unread {} removed {}",
                    self.of(&m.user_id),
                    m.role,
                    pos(m.last_pos),
                    pos(m.read_up_to_pos),
                    m.unread,
                    m.removed_at.is_some()
                ));
            }
        }
        lines
    }
}

async fn durable(commit: nexus::store::writes::Commit) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    commit.when_durable(move |synced| {
        let _ = tx.send(synced);
    });
    rx.await.unwrap().unwrap();
}

/// The script on one engine: its answers and the rows it left.
async fn run(store: Store, db: Option<TestDb>) -> (Vec<String>, Vec<String>) {
    let mut run = Run::start(store, db).await;
    let answers = run.play().await;
    let rows = run.rows().await;
    (answers, rows)
}

/// `lines` of `engine` against the reference's, with every line that differs.
fn same(what: &str, engine: &str, reference: &[String], lines: &[String]) {
    let mut diff = Vec::new();
    for i in 0..reference.len().max(lines.len()) {
        let (a, b) = (reference.get(i), lines.get(i));
        if a != b {
            diff.push(format!("  sqlite file: {a:?}\n  {engine}: {b:?}"));
        }
    }
    assert!(
        diff.is_empty(),
        "{engine}'s {what} differ from the SQLite file's:\n{}",
        diff.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_leaves_the_same_rows_for_the_same_batches() {
    let file = TestDb::create(Backend::Sqlite).await.unwrap();
    let store = Store::connect(&file.url, 4).await.unwrap();
    let (answers, rows) = run(store, Some(file)).await;

    // The script does what it says on the reference engine, so the comparison means something.
    let has = |needle: &str| rows.iter().any(|l| l.contains(needle));
    let answered = |needle: &str| answers.iter().any(|l| l.contains(needle));
    assert!(answered("sent m1 duplicate=true"), "{answers:#?}");
    assert!(answered("sent m6 duplicate=true"), "{answers:#?}");
    assert!(answered("sent m9 duplicate=false"), "{answers:#?}");
    assert!(answered("refused Forbidden"), "{answers:#?}");
    assert!(answered("refused AlreadyDeleted"), "{answers:#?}");
    assert!(
        has("message m9 in ada+bob from ada to bob \"after the failure\""),
        "{rows:#?}"
    );
    assert!(
        !rows.iter().any(|l| l.contains("never stored")),
        "{rows:#?}"
    );
    assert!(has("\"hi ada!\" tempId Some(\"t-1\") seqs 2/2 edited true deleted false read by [ada] delivered to [] history [\"hi ada\"]"), "{rows:#?}");
    assert!(
        has("deleted true read by [bob] delivered to [bob] history []"),
        "{rows:#?}"
    );
    assert!(has("read up to m5 unread 1 removed true"), "{rows:#?}");
    assert!(has("ada lists g unread 3 latest m10"), "{rows:#?}");
    assert_eq!(
        rows.iter().filter(|l| l.contains(" feed #")).count(),
        rows.iter()
            .filter(|l| l.contains(" feed #"))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<std::collections::HashSet<_>>()
            .len(),
        "a seq twice in a feed"
    );

    let memory = Store::connect("sqlite::memory:", 4).await.unwrap();
    let (memory_answers, memory_rows) = run(memory, None).await;
    same("answers", "in-memory SQLite", &answers, &memory_answers);
    same("rows", "in-memory SQLite", &rows, &memory_rows);

    // Skipped (said so) when PostgreSQL is unreachable outside CI; with CI=true, a failure.
    if let Some(db) = TestDb::create(Backend::Postgres).await {
        let store = Store::connect(&db.url, 4).await.unwrap();
        let (pg_answers, pg_rows) = run(store, Some(db)).await;
        same("answers", "PostgreSQL", &answers, &pg_answers);
        same("rows", "PostgreSQL", &rows, &pg_rows);
    }
}
