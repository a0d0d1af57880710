//! Which of the queued commands the writer applies together in its next batch.
//!
//! A batch costs about the rows it writes, and a group message writes a change-log row and
//! a member row for every member: 512 messages to groups of 100 are one transaction of
//! ~100,000 rows (a quarter of a second on SQLite), and a 1:1 send queued behind them waited
//! for all of it. So a batch is bounded by its estimated rows ([`BATCH_ROWS`]) as well as
//! by its commands ([`MAX_BATCH`]), and while large commands are waiting, every other batch
//! takes only the small ones ([`SMALL`] rows or fewer): a 1:1 send queued during a group
//! batch goes in the very next one, which is small and quick, and the large commands lose
//! only that small batch's time. Large commands are taken conversation by conversation
//! (the oldest command's first), since a batch writes each conversation's member rows and
//! each member's counter once however many of its messages it holds: a bounded batch of
//! a few conversations costs about as much per message as the unbounded one did.
//!
//! What never changes: one user's commands are applied in the order they were enqueued
//! (a command is passed over only with every later command of the same user), and the
//! oldest queued command that no batch in flight holds is in every batch that is not
//! small-only, so nothing waits forever. Commands of different users that wait together were concurrent: nobody can
//! have seen one applied before the other was sent, so either order is one the client
//! could have got anyway.
//!
//! On PostgreSQL two batches may be in flight at once, on two connections (see
//! [`super::writer`]). A batch formed beside another takes none of the commands of the
//! users that one is applying (so a batch that fails and is retried command by command
//! cannot be overtaken by a user's later command), and none that would wait in the
//! database for the locks that one holds: a 1:1 send to one of its users, a command on one
//! of its conversations ([`Busy`]). Those wait here until it is done, and the second
//! connection takes the commands that need nothing of it, so the two transactions do not
//! queue on each other's row locks.
//!
//! The rows of a command are estimated before its transaction reads anything, from what
//! earlier batches of this worker learned: the number of members of each conversation
//! they touched and the conversation of each message they wrote or read. A command about
//! a conversation or message not seen yet (another node's, or from before a restart), and
//! a read mark (its cost depends on how many messages it marks), count as [`UNKNOWN`]: a
//! large command. An estimate only decides what goes together; the rules decide the rest.

use std::collections::{HashMap, HashSet, VecDeque};

use super::Command;
use crate::domain::UserId;

/// Most commands applied in one transaction.
pub const MAX_BATCH: usize = 512;

/// Most rows a batch is planned to write (change-log rows and member rows, estimated): 80
/// messages to groups of 100, or a full [`MAX_BATCH`] of 1:1 sends. The first command of a
/// batch goes in whatever it costs.
pub const BATCH_ROWS: u32 = 16_384;

/// A command of at most this many rows is small: served ahead of larger ones. A 1:1 send,
/// a receipt, a message to a group of up to 8.
pub const SMALL: u32 = 16;

/// The rows assumed for a command whose conversation is not known yet: a message to a
/// group of the default largest size (`GROUP_MAX_MEMBERS`).
pub const UNKNOWN: u32 = 2 * super::DEFAULT_GROUP_MAX_MEMBERS as u32;

/// Conversations and messages remembered per generation; two generations are kept, so
/// memory stays bounded while what is used often stays known.
const REMEMBERED: usize = 50_000;

/// A command waiting in the worker's queue.
pub trait Queued {
    fn command(&self) -> &Command;
}

impl Queued for Command {
    fn command(&self) -> &Command {
        self
    }
}

/// A map that forgets: entries live for at least one generation of [`REMEMBERED`] inserts.
#[derive(Debug, Default)]
struct Recent<V> {
    now: HashMap<u128, V>,
    before: HashMap<u128, V>,
}

impl<V: Copy> Recent<V> {
    fn get(&self, key: u128) -> Option<V> {
        self.now
            .get(&key)
            .or_else(|| self.before.get(&key))
            .copied()
    }

    fn insert(&mut self, key: u128, value: V) {
        if self.now.len() >= REMEMBERED {
            self.before = std::mem::take(&mut self.now);
        }
        self.now.insert(key, value);
    }
}

/// What the worker knows of conversations, to estimate what a command writes.
#[derive(Debug, Default)]
pub struct Sizes {
    /// Current members, by conversation.
    members: Recent<u32>,
    /// The conversation of a message.
    conversation_of: Recent<u128>,
}

impl Sizes {
    /// `conversation` has `members` current members.
    pub fn members(&mut self, conversation: &str, members: usize) {
        if let Ok(id) = uuid::Uuid::try_parse(conversation) {
            self.members
                .insert(id.as_u128(), u32::try_from(members).unwrap_or(u32::MAX));
        }
    }

    /// `message` belongs to `conversation`.
    pub fn message(&mut self, message: &str, conversation: &str) {
        if let (Ok(m), Ok(c)) = (
            uuid::Uuid::try_parse(message),
            uuid::Uuid::try_parse(conversation),
        ) {
            self.conversation_of.insert(m.as_u128(), c.as_u128());
        }
    }

    /// A change to every member of a conversation of `members`: a change-log row each, and
    /// (for a message) a member row each.
    fn fan_out(members: Option<u32>) -> u32 {
        members.map_or(UNKNOWN, |m| m.saturating_mul(2))
    }

    /// The conversation `cmd` changes, when known before its transaction (a 1:1 send's is
    /// not, but it is small).
    fn conversation(&self, cmd: &Command) -> Option<u128> {
        match cmd {
            Command::Post { conversation, .. }
            | Command::Rename { conversation, .. }
            | Command::AddMembers { conversation, .. }
            | Command::RemoveMember { conversation, .. }
            | Command::MarkRead { conversation, .. } => Some(conversation.as_u128()),
            Command::Edit { message, .. }
            | Command::Delete { message, .. }
            | Command::Receipt { message, .. } => self.conversation_of.get(message.as_u128()),
            Command::Send { .. } | Command::CreateGroup { .. } => None,
        }
    }

    /// The rows `cmd` is estimated to write.
    pub fn cost(&self, cmd: &Command) -> u32 {
        let of_message = |message: u128| {
            Self::fan_out(
                self.conversation_of
                    .get(message)
                    .and_then(|c| self.members.get(c)),
            )
        };
        match cmd {
            // Two feeds and two member rows.
            Command::Send { .. } => 4,
            // Two feeds and the receipt (and the reader's member row).
            Command::Receipt { .. } => 4,
            Command::Post { conversation, .. }
            | Command::Rename { conversation, .. }
            | Command::RemoveMember { conversation, .. } => {
                Self::fan_out(self.members.get(conversation.as_u128()))
            }
            Command::Edit { message, .. } | Command::Delete { message, .. } => {
                of_message(message.as_u128())
            }
            Command::CreateGroup { members, .. } => Self::fan_out(Some(members.len() as u32 + 1)),
            Command::AddMembers {
                conversation,
                users,
                ..
            } => Self::fan_out(self.members.get(conversation.as_u128()))
                .saturating_add(2 * users.len() as u32),
            Command::MarkRead { .. } => UNKNOWN,
        }
    }
}

/// What a batch in flight holds, for the batches formed beside it: the users whose
/// commands it applies, the receivers of its 1:1 sends, and the conversations it changes
/// (where known before its transaction). Its transaction locks their counters and rows
/// until it commits.
#[derive(Debug, Default)]
pub struct Busy {
    users: HashSet<UserId>,
    conversations: HashSet<u128>,
    /// It holds a large command (more than [`SMALL`] rows).
    large: bool,
}

impl Busy {
    /// What `cmds` hold while they are being applied.
    pub fn of<'c>(cmds: impl IntoIterator<Item = &'c Command>, sizes: &Sizes) -> Busy {
        let mut busy = Busy::default();
        for cmd in cmds {
            busy.users.insert(cmd.actor());
            if let Command::Send { receiver, .. } = cmd {
                busy.users.insert(*receiver);
            }
            if let Some(c) = sizes.conversation(cmd) {
                busy.conversations.insert(c);
            }
            busy.large |= sizes.cost(cmd) > SMALL;
        }
        busy
    }

    /// True when the batch holds a large command: beside it go only small ones.
    pub fn is_large(&self) -> bool {
        self.large
    }

    /// True when `cmd` must wait for this batch: its user is in it, or it would wait for
    /// the batch's locks.
    fn holds(&self, cmd: &Command, sizes: &Sizes) -> bool {
        self.users.contains(&cmd.actor())
            || matches!(cmd, Command::Send { receiver, .. } if self.users.contains(receiver))
            || sizes
                .conversation(cmd)
                .is_some_and(|c| self.conversations.contains(&c))
    }
}

/// The worker's queue: commands taken from its channel, in the order they arrived.
pub struct Queue<T> {
    waiting: VecDeque<T>,
    pub sizes: Sizes,
    /// The last batch took only small commands while larger ones waited.
    small_only: bool,
}

impl<T: Queued> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            waiting: VecDeque::new(),
            sizes: Sizes::default(),
            small_only: false,
        }
    }
}

impl<T: Queued> Queue<T> {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn push(&mut self, item: T) {
        self.waiting.push_back(item);
    }

    /// Takes out every command `expired` says is past its deadline (in order).
    pub fn take_expired(&mut self, expired: impl Fn(&T) -> bool) -> Vec<T> {
        if !self.waiting.iter().any(&expired) {
            return Vec::new();
        }
        let (late, kept): (Vec<T>, Vec<T>) = self.waiting.drain(..).partition(|t| expired(t));
        self.waiting = kept.into();
        late
    }

    /// [`Queue::next_batch_of`] of any size and kind.
    #[cfg(test)]
    pub fn next_batch(&mut self, beside: &[&Busy]) -> (Vec<T>, u32) {
        self.next_batch_of(beside, 0, false)
    }

    /// The next batch, in the order its commands are to be applied (each user's in the
    /// order they were enqueued), and its estimated rows; `beside` are the batches still in
    /// flight, whose commands' users and locks the new batch keeps clear of (it may be
    /// empty then). Nothing if it would hold fewer than `at_least` commands. With
    /// `only_small`, only small commands (beside a large batch: a 1:1 send queued behind a
    /// group load goes at once on the other connection, not behind a second large batch).
    pub fn next_batch_of(
        &mut self,
        beside: &[&Busy],
        at_least: usize,
        only_small: bool,
    ) -> (Vec<T>, u32) {
        let held: Vec<bool> = self
            .waiting
            .iter()
            .map(|t| beside.iter().any(|b| b.holds(t.command(), &self.sizes)))
            .collect();
        let costs: Vec<u32> = self
            .waiting
            .iter()
            .map(|t| self.sizes.cost(t.command()))
            .collect();
        // While large commands wait, every other batch is the small ones that may go.
        let any_large = costs.iter().zip(&held).any(|(c, h)| *c > SMALL && !h);
        let smalls = if only_small || (any_large && !self.small_only) {
            self.choose(&costs, &held, true)
        } else {
            Vec::new()
        };
        let small_only = !smalls.is_empty();
        let take = if small_only || only_small {
            smalls
        } else {
            self.choose(&costs, &held, false)
        };
        if take.len() < at_least.max(1) {
            return (Vec::new(), 0);
        }
        // The main connection's turns alternate; a small batch beside a large one is no turn.
        if !only_small {
            self.small_only = small_only;
        }
        let rows = take.iter().map(|i| costs[*i]).sum();
        // Removed from the back so the indices ahead stay valid; then put in order.
        let mut batch: Vec<T> = take
            .iter()
            .rev()
            .filter_map(|i| self.waiting.remove(*i))
            .collect();
        batch.reverse();
        (batch, rows)
    }

    /// The indices of the commands of the next batch, ascending. A user's command is passed
    /// over only together with all their later ones. Large commands are taken conversation
    /// by conversation, starting with the oldest command's: a batch's member rows and
    /// counters are written once per conversation and user, however many of its messages
    /// the batch holds, so a batch of a few conversations writes fewer rows per message
    /// than one of the same size spread over many. A `held` command waits for a batch in
    /// flight, and so do its user's later ones.
    fn choose(&self, costs: &[u32], held: &[bool], small_only: bool) -> Vec<usize> {
        let mut batch = Picked {
            taken: vec![false; self.waiting.len()],
            ..Picked::default()
        };
        loop {
            // The first command passed over only because its conversation is not in the
            // batch yet: the next conversation to add, once this scan is done.
            let mut next = None;
            let mut blocked: HashSet<UserId> = HashSet::new();
            for (i, (t, cost)) in self.waiting.iter().zip(costs).enumerate() {
                if batch.count == MAX_BATCH {
                    break;
                }
                let actor = t.command().actor();
                if batch.taken[i] || blocked.contains(&actor) {
                    continue;
                }
                if held[i] {
                    blocked.insert(actor);
                    continue;
                }
                let small = *cost <= SMALL;
                let conversation = self.sizes.conversation(t.command());
                let allowed = small || !small_only;
                let fits = (batch.count == 0 && !small_only)
                    || batch.rows.saturating_add(*cost) <= BATCH_ROWS;
                let joins = small
                    || batch.count == 0
                    || conversation.is_some_and(|c| batch.open.contains(&c));
                if allowed && fits && joins {
                    batch.take(i, *cost, conversation);
                } else {
                    if allowed && fits && next.is_none() {
                        next = Some((i, conversation));
                    }
                    blocked.insert(actor);
                }
            }
            match next {
                Some((i, conversation))
                    if batch.count < MAX_BATCH
                        && batch.rows.saturating_add(costs[i]) <= BATCH_ROWS =>
                {
                    batch.take(i, costs[i], conversation)
                }
                _ => break,
            }
        }
        (0..batch.taken.len()).filter(|i| batch.taken[*i]).collect()
    }
}

/// The commands chosen so far for a batch.
#[derive(Default)]
struct Picked {
    taken: Vec<bool>,
    count: usize,
    rows: u32,
    /// The conversations the batch changes.
    open: HashSet<u128>,
}

impl Picked {
    fn take(&mut self, i: usize, cost: u32, conversation: Option<u128>) {
        self.taken[i] = true;
        self.count += 1;
        self.rows = self.rows.saturating_add(cost);
        if let Some(c) = conversation {
            self.open.insert(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, MessageBody, MessageId};
    use std::collections::HashMap;

    fn post(sender: UserId, conversation: ConversationId) -> Command {
        Command::Post {
            sender,
            conversation,
            body: MessageBody::parse("hi").unwrap(),
            client_message_id: None,
        }
    }

    fn send(sender: UserId, receiver: UserId) -> Command {
        Command::Send {
            sender,
            receiver,
            body: MessageBody::parse("hi").unwrap(),
            client_message_id: None,
        }
    }

    /// 32 senders in 16 groups of `members` (senders 2k and 2k+1 in group k), 16 posts
    /// each, interleaved as they arrive.
    fn group_load(
        queue: &mut Queue<Command>,
        members: usize,
    ) -> (Vec<UserId>, Vec<ConversationId>) {
        let groups: Vec<ConversationId> = (0..16).map(|_| ConversationId::new()).collect();
        for g in &groups {
            queue.sizes.members(&g.as_string(), members);
        }
        let senders: Vec<UserId> = (0..32).map(|_| UserId::new()).collect();
        for _ in 0..16 {
            for (i, s) in senders.iter().enumerate() {
                queue.push(post(*s, groups[i / 2]));
            }
        }
        (senders, groups)
    }

    fn conversations(batch: &[Command]) -> Vec<ConversationId> {
        let mut seen = Vec::new();
        for c in batch {
            if let Command::Post { conversation, .. } = c {
                if !seen.contains(conversation) {
                    seen.push(*conversation);
                }
            }
        }
        seen
    }

    fn actors(batch: &[Command]) -> Vec<UserId> {
        batch.iter().map(Command::actor).collect()
    }

    #[test]
    fn costs_count_every_member() {
        let mut sizes = Sizes::default();
        let (group, message) = (ConversationId::new(), MessageId::new());
        let ada = UserId::new();
        assert_eq!(sizes.cost(&post(ada, group)), UNKNOWN);
        sizes.members(&group.as_string(), 100);
        sizes.message(&message.as_string(), &group.as_string());
        assert_eq!(sizes.cost(&post(ada, group)), 200);
        assert_eq!(sizes.cost(&send(ada, UserId::new())), 4);
        let edit = Command::Edit {
            actor: ada,
            message,
            body: MessageBody::parse("x").unwrap(),
        };
        assert_eq!(sizes.cost(&edit), 200);
        let other = Command::Delete {
            actor: ada,
            message: MessageId::new(),
        };
        assert_eq!(sizes.cost(&other), UNKNOWN);
    }

    #[test]
    fn a_batch_of_group_messages_is_bounded_by_its_rows_and_kept_to_few_conversations() {
        let mut queue = Queue::default();
        let (_, groups) = group_load(&mut queue, 100);
        let (batch, rows) = queue.next_batch(&[]);
        assert_eq!(batch.len(), (BATCH_ROWS / 200) as usize);
        assert_eq!(rows, 200 * batch.len() as u32);
        // The oldest message's group whole (32 messages), then the next ones in turn.
        assert_eq!(conversations(&batch), groups[..3]);
        // 1:1 sends alone: as many as a batch holds.
        let mut queue = Queue::default();
        for _ in 0..600 {
            queue.push(send(UserId::new(), UserId::new()));
        }
        assert_eq!(queue.next_batch(&[]).0.len(), MAX_BATCH);
    }

    #[test]
    fn one_command_larger_than_a_batch_still_goes_alone() {
        let mut queue = Queue::default();
        let members: Vec<UserId> = (0..10_000).map(|_| UserId::new()).collect();
        let ada = UserId::new();
        queue.push(Command::CreateGroup {
            actor: ada,
            title: crate::domain::GroupTitle::parse("big").unwrap(),
            members,
            max_members: 20_000,
        });
        queue.push(send(ada, UserId::new()));
        let (batch, rows) = queue.next_batch(&[]);
        assert_eq!(batch.len(), 1);
        assert!(rows > BATCH_ROWS);
        assert_eq!(queue.next_batch(&[]).0.len(), 1);
    }

    /// A 1:1 send queued behind a saturating group load goes in the next batch, alone with
    /// the other small commands; the group load then continues from its oldest message.
    #[test]
    fn small_commands_go_in_the_next_batch_behind_a_group_load() {
        let mut queue = Queue::default();
        let (senders, groups) = group_load(&mut queue, 100);
        queue.next_batch(&[]);
        let (bob, eve) = (UserId::new(), UserId::new());
        queue.push(send(bob, eve));
        queue.push(send(eve, bob));
        let (next, rows) = queue.next_batch(&[]);
        assert_eq!(actors(&next), vec![bob, eve]);
        assert_eq!(rows, 8);
        // Then the oldest waiting message (group 3's first) and its group, and so on.
        let (after, _) = queue.next_batch(&[]);
        assert!(after.iter().all(|c| matches!(c, Command::Post { .. })));
        assert_eq!(after[0].actor(), senders[6]);
        assert_eq!(conversations(&after)[0], groups[3]);
        assert!(after.len() >= 80);
    }

    /// A user's 1:1 send does not overtake their own earlier group message.
    #[test]
    fn a_users_commands_keep_their_order() {
        let mut queue = Queue::default();
        let (senders, _) = group_load(&mut queue, 100);
        queue.next_batch(&[]);
        let (ada, bob) = (senders[31], UserId::new());
        queue.push(send(ada, bob));
        queue.push(send(bob, ada));
        let (next, _) = queue.next_batch(&[]);
        // Ada still has group messages waiting: her send waits behind them.
        assert_eq!(actors(&next), vec![bob]);
        let mut order: Vec<Vec<Command>> = Vec::new();
        while !queue.is_empty() {
            order.push(queue.next_batch(&[]).0);
        }
        let ada_rest: Vec<&Command> = order
            .iter()
            .flatten()
            .filter(|c| c.actor() == ada)
            .collect();
        assert_eq!(ada_rest.len(), 17);
        assert!(ada_rest[..16]
            .iter()
            .all(|c| matches!(c, Command::Post { .. })));
        assert!(matches!(ada_rest[16], Command::Send { .. }));
        // Everyone's commands come out in the order they went in.
        for s in &senders {
            let mine: Vec<usize> = order
                .iter()
                .flatten()
                .enumerate()
                .filter(|(_, c)| c.actor() == *s)
                .map(|(i, _)| i)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
    }

    /// Several users' commands to several groups, in a random order: per user, the batches
    /// give them back in the order they came, whatever the mix.
    #[test]
    fn per_user_order_holds_for_any_mix() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let users: Vec<UserId> = (0..12).map(|_| UserId::new()).collect();
        let groups: Vec<ConversationId> = (0..5).map(|_| ConversationId::new()).collect();
        let mut queue = Queue::default();
        for (i, g) in groups.iter().enumerate() {
            queue
                .sizes
                .members(&g.as_string(), [2, 10, 100, 256, 40][i]);
        }
        let mut expected: HashMap<UserId, Vec<usize>> = HashMap::new();
        let mut all = Vec::new();
        for k in 0..3000 {
            let u = users[rng.gen_range(0..users.len())];
            let body = MessageBody::parse(&k.to_string()).unwrap();
            let cmd = if rng.gen_bool(0.3) {
                Command::Send {
                    sender: u,
                    receiver: users[0],
                    body,
                    client_message_id: None,
                }
            } else {
                Command::Post {
                    sender: u,
                    conversation: groups[rng.gen_range(0..groups.len())],
                    body,
                    client_message_id: None,
                }
            };
            expected.entry(u).or_default().push(k);
            all.push(cmd);
        }
        let tag = |c: &Command| match c {
            Command::Send { body, .. } | Command::Post { body, .. } => {
                body.as_str().parse::<usize>().unwrap()
            }
            _ => unreachable!(),
        };
        let mut got: HashMap<UserId, Vec<usize>> = HashMap::new();
        let mut rest = all.into_iter();
        while !queue.is_empty() || rest.len() > 0 {
            for c in rest.by_ref().take(rng.gen_range(0..400)) {
                queue.push(c);
            }
            let (batch, rows) = queue.next_batch(&[]);
            assert!(batch.len() <= MAX_BATCH);
            assert!(rows <= BATCH_ROWS || batch.len() == 1);
            for c in batch {
                got.entry(c.actor()).or_default().push(tag(&c));
            }
        }
        assert_eq!(got, expected);
    }

    /// Under a steady stream of small commands the large ones still progress: small-only
    /// batches alternate with batches that start at the oldest command.
    #[test]
    fn large_commands_are_not_starved() {
        let mut queue = Queue::default();
        group_load(&mut queue, 100);
        let posts = |q: &Queue<Command>| {
            q.waiting
                .iter()
                .filter(|c| matches!(c, Command::Post { .. }))
                .count()
        };
        let mut round = 0;
        while posts(&queue) > 0 {
            let oldest = queue
                .waiting
                .iter()
                .find(|c| matches!(c, Command::Post { .. }))
                .unwrap()
                .actor();
            queue.push(send(UserId::new(), UserId::new()));
            let (batch, _) = queue.next_batch(&[]);
            let large = batch
                .iter()
                .filter(|c| matches!(c, Command::Post { .. }))
                .count();
            if round % 2 == 0 {
                assert_eq!(large, 0, "round {round}: small ones only");
            } else {
                assert_eq!(batch[0].actor(), oldest, "round {round}: the oldest first");
            }
            round += 1;
        }
        // 512 messages of 200 rows, 81 per batch: 7 batches, each after a small one.
        assert_eq!(round, 14);
    }

    /// A batch formed beside one in flight leaves out the commands of that batch's users
    /// (with all their later ones, even those that would be free), 1:1 sends to them and
    /// commands on its conversations, and takes the rest, in order; beside nothing, it
    /// takes everything.
    #[test]
    fn a_batch_beside_another_keeps_clear_of_its_users_and_conversations() {
        let mut queue: Queue<Command> = Queue::default();
        let (ada, bob, cy, dee, eve, fay) = (
            UserId::new(),
            UserId::new(),
            UserId::new(),
            UserId::new(),
            UserId::new(),
            UserId::new(),
        );
        let group = ConversationId::new();
        queue.sizes.members(&group.as_string(), 3);
        let in_flight = [send(ada, bob), post(cy, group)];
        let busy = Busy::of(&in_flight, &queue.sizes);
        queue.push(send(ada, eve)); // ada's own: waits
        queue.push(send(eve, fay)); // free
        queue.push(send(dee, bob)); // to bob, whose counter is locked: waits
        queue.push(send(dee, fay)); // dee's later one: waits behind dee's first
        queue.push(post(fay, group)); // on the group in flight: waits
        queue.push(send(eve, dee)); // free, after eve's first
        let shown = |cmds: &[Command]| cmds.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>();
        let (batch, _) = queue.next_batch(&[&busy]);
        assert_eq!(shown(&batch), shown(&[send(eve, fay), send(eve, dee)]));
        let (rest, _) = queue.next_batch(&[]);
        assert_eq!(
            shown(&rest),
            shown(&[
                send(ada, eve),
                send(dee, bob),
                send(dee, fay),
                post(fay, group)
            ])
        );
    }

    /// Beside a large batch only small commands go, however many large ones wait, and
    /// the alternation of the main connection's batches is left as it was.
    #[test]
    fn beside_a_large_batch_only_small_commands_go() {
        let mut queue: Queue<Command> = Queue::default();
        let (g1, g2) = (ConversationId::new(), ConversationId::new());
        queue.sizes.members(&g1.as_string(), 100);
        queue.sizes.members(&g2.as_string(), 100);
        let busy = Busy::of(&[post(UserId::new(), g1)], &queue.sizes);
        assert!(busy.is_large());
        assert!(!Busy::of(&[send(UserId::new(), UserId::new())], &queue.sizes).is_large());
        let (ada, bob) = (UserId::new(), UserId::new());
        queue.push(post(UserId::new(), g2));
        queue.push(send(ada, bob));
        queue.push(post(UserId::new(), g2));
        let (beside, _) = queue.next_batch_of(&[&busy], 1, true);
        assert_eq!(actors(&beside), [ada]);
        // Nothing small left: nothing goes beside it.
        assert!(queue.next_batch_of(&[&busy], 1, true).0.is_empty());
        // Once it is done, the group messages go.
        assert_eq!(queue.next_batch(&[]).0.len(), 2);
    }

    /// A batch beside another is formed only when it would hold `at_least` commands; until
    /// then the queue keeps them.
    #[test]
    fn a_batch_beside_another_waits_for_enough_commands() {
        let mut queue: Queue<Command> = Queue::default();
        let busy = Busy::of(&[send(UserId::new(), UserId::new())], &queue.sizes);
        for _ in 0..3 {
            queue.push(send(UserId::new(), UserId::new()));
        }
        assert!(queue.next_batch_of(&[&busy], 4, false).0.is_empty());
        assert_eq!(queue.len(), 3);
        queue.push(send(UserId::new(), UserId::new()));
        assert_eq!(queue.next_batch_of(&[&busy], 4, false).0.len(), 4);
        assert!(queue.is_empty());
    }
}
