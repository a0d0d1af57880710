// Generated from crates/protocol by `NEXUS_UPDATE_WIRE_TYPES=1 cargo test -p nexus-protocol`.
// Do not edit: `cargo test` fails when this file no longer matches the Rust types.
/* eslint-disable */

export type User = { id: string, name: string, email: string, };

export type AuthResponse = { accessToken: string, user: User, };

export type UserWithDevices = { id: string, name: string, email: string, fcmDeviceToken: string | null, deviceTokens: Array<string>, };

export type ReadReceipt = { userId: string, readAt: string, };

export type DeliveryReceipt = { userId: string, deliveredAt: string, };

export type Message = { id: string, conversationId: string, content: string, senderId: string, receiverId: string | null, timestamp: string, isEdited: boolean, editedAt: string | null, deletedAt: string | null, isEncrypted: boolean, encryptionKeyId: string | null, sender: User, receiver: User | null, readReceipts: Array<ReadReceipt>, deliveryReceipts: Array<DeliveryReceipt>, seq: number, clientMessageId?: string | null, };

export type MessagePage = { 
/**
 * Oldest first.
 */
messages: Array<Message>, 
/**
 * Pass back as `before` for the previous (older) page; `null` at the start of history.
 */
nextCursor: string | null, };

export type Conversation = { otherUser: User | null, lastMessage: Message | null, unreadCount: number, conversation: ConversationInfo, };

export type ConversationType = "direct" | "group";

export type MemberRole = "admin" | "member";

export type ConversationMember = { user: User, role: MemberRole, joinedAt: string, };

export type ConversationInfo = { id: string, type: ConversationType, title: string | null, members: Array<ConversationMember>, createdAt: string, };

export type ConversationSummary = { lastMessage: Message | null, unreadCount: number, id: string, type: ConversationType, title: string | null, members: Array<ConversationMember>, createdAt: string, };

export type ConversationPage = { conversations: Array<ConversationSummary>, nextCursor: string | null, };

export type ChangeType = "message.created" | "message.edited" | "message.deleted" | "message.delivered" | "message.read" | "conversation.created" | "conversation.updated" | "conversation.member_added" | "conversation.member_removed" | "conversation.read";

export type SyncEvent = { seq: number, type: ChangeType, messageId: string | null, conversationId: string, 
/**
 * When the change happened.
 */
at: string, 
/**
 * The user who made the change (sender for created/edited/deleted, reader for
 * delivered/read, the admin or the leaving member for conversation changes).
 */
userId: string, message: Message | null, conversation?: ConversationInfo | null, };

export type SyncPage = { events: Array<SyncEvent>, 
/**
 * Pass back as `since`. Equals `since` when there was nothing new.
 */
nextCursor: number, hasMore: boolean, };

export type HttpError = { statusCode: number, message: string, error: string, };

export type ErrorCode = "VALIDATION_FAILED" | "NOT_FOUND" | "FORBIDDEN" | "ALREADY_DELETED" | "RATE_LIMITED" | "UNAVAILABLE" | "INTERNAL";

export type NewMessage = { receiverId?: string | null, conversationId?: string | null, content: string, tempId?: string | null, };

export type MessageRef = { messageId: string, };

export type EditMessage = { messageId: string, content: string, };

export type Typing = { receiverId?: string | null, conversationId?: string | null, };

export type ConnectionSuccess = { userId: string, socketId: string, timestamp: string, 
/**
 * The user's latest change-feed number: a client whose last seen `seq` is lower
 * missed something and catches up with `GET /sync?since=<its seq>`.
 */
seq: number, };

export type MessageSent = { 
/**
 * The client's `tempId` when it gave one, else the stored id.
 */
messageId: string, dbMessageId: string, timestamp: string, seq: number, };

export type IncomingMessage = { tempId: string | null, id: string, conversationId: string, content: string, senderId: string, receiverId: string | null, timestamp: string, isEdited: boolean, editedAt: string | null, deletedAt: string | null, isEncrypted: boolean, encryptionKeyId: string | null, sender: User, receiver: User | null, readReceipts: Array<ReadReceipt>, deliveryReceipts: Array<DeliveryReceipt>, seq: number, clientMessageId?: string | null, };

export type DeliveredUpdate = { messageId: string, userId: string, deliveredAt: string, seq: number, };

export type ReadUpdate = { messageId: string, userId: string, readAt: string, timestamp: string, seq: number, };

export type MessageEdited = { id: string, content: string, isEdited: boolean, editedAt: string, timestamp: string, seq: number, };

export type MessageDeleted = { id: string, deletedAt: string, content: string, timestamp: string, seq: number, };

export type UserTyping = { userId: string, isTyping: boolean, 
/**
 * Typing in a group conversation (absent for the brief's 1:1 typing).
 */
conversationId?: string | null, };

export type OnlineUsers = { userIds: Array<string>, };

export type PresenceStatus = "online" | "offline";

export type PresenceUpdate = { userId: string, status: PresenceStatus, lastSeen: string, };

export type HealthResponse = { status: string, database: string, redis: string, timestamp: string, };

export type ErrorEvent = { message: string, code: ErrorCode, event: string, tempId?: string | null, timestamp: string, };

export type RateLimitExceeded = { limit: number, retryAfterMs: number, tempId?: string | null, };

export type ForceDisconnect = { reason: string, };

export type Resync = { reason: string, };

export type MarkConversationRead = { conversationId: string, upToMessageId: string, };

export type ConversationRead = { conversationId: string, userId: string, upToMessageId: string, readAt: string, 
/**
 * How many messages this call marked read.
 */
marked: number, seq: number, };

export type ConversationUpdated = { conversation: ConversationInfo, 
/**
 * What changed: `conversation.created`, `.updated`, `.member_added`, `.member_removed`.
 */
change: ChangeType, seq: number, };

export const NAMESPACE = "/ws";

export const DELETED_CONTENT = "This message has been deleted";

/** Client → server events: payload and acknowledgement answer. */
export interface ClientToServerEvents {
  NEW_MESSAGE: (payload: NewMessage, ack: (answer: MessageSent | ErrorEvent) => void) => void;
  MESSAGE_DELIVERED: (payload: MessageRef, ack: (answer: DeliveredUpdate | ErrorEvent) => void) => void;
  MESSAGE_READ: (payload: MessageRef, ack: (answer: ReadUpdate | ErrorEvent) => void) => void;
  EDIT_MESSAGE: (payload: EditMessage, ack: (answer: MessageEdited | ErrorEvent) => void) => void;
  DELETE_MESSAGE: (payload: MessageRef, ack: (answer: MessageDeleted | ErrorEvent) => void) => void;
  TYPING_START: (payload: Typing, ack: (answer: UserTyping | ErrorEvent) => void) => void;
  TYPING_STOP: (payload: Typing, ack: (answer: UserTyping | ErrorEvent) => void) => void;
  GET_ONLINE_USERS: (ack: (answer: OnlineUsers | ErrorEvent) => void) => void;
  HEALTH_CHECK: (ack: (answer: HealthResponse | ErrorEvent) => void) => void;
  MARK_CONVERSATION_READ: (payload: MarkConversationRead, ack: (answer: ConversationRead | ErrorEvent) => void) => void;
}

/** Server → client events and their payloads. */
export interface ServerToClientEvents {
  CONNECTION_SUCCESS: (payload: ConnectionSuccess) => void;
  MESSAGE_SENT: (payload: MessageSent) => void;
  NEW_MESSAGE: (payload: IncomingMessage) => void;
  MESSAGE_DELIVERED_UPDATE: (payload: DeliveredUpdate) => void;
  MESSAGE_READ_UPDATE: (payload: ReadUpdate) => void;
  MESSAGE_EDITED: (payload: MessageEdited) => void;
  MESSAGE_DELETED: (payload: MessageDeleted) => void;
  USER_TYPING: (payload: UserTyping) => void;
  ONLINE_USERS: (payload: OnlineUsers) => void;
  USER_PRESENCE_UPDATE: (payload: PresenceUpdate) => void;
  HEALTH_RESPONSE: (payload: HealthResponse) => void;
  ERROR: (payload: ErrorEvent) => void;
  RATE_LIMIT_EXCEEDED: (payload: RateLimitExceeded) => void;
  FORCE_DISCONNECT: (payload: ForceDisconnect) => void;
  RESYNC: (payload: Resync) => void;
  CONVERSATION_UPDATED: (payload: ConversationUpdated) => void;
  CONVERSATION_READ: (payload: ConversationRead) => void;
}
