/**
 * WebSocket frames, hand-written from docs/streams.md (a JSON Schema will replace this).
 * Stored frames carry a global `position`; ephemeral ones (assistant deltas, typing) do not.
 */
import type { WireSource } from './sources'

interface Stored<T extends string, D> {
  position: number
  type: T
  session_id: string | null
  data: D
}

export interface MessageSource {
  kind: 'message'
  session_id: string
  message_id: string
}
export interface DocumentSource {
  kind: 'document'
  document_id: string
  passage: number
}
export type Source = MessageSource | DocumentSource

export interface PostedData {
  id: string
  session_id: string
  author_id: string
  role: string
  content: string | null
  created_at: string
  position: number
  client_message_id: string | null
  version: number
}

export interface ReplyCompletedData {
  id: string
  reply_id: string
  session_id: string
  reply_to: string
  author_id: 'assistant'
  role: 'assistant'
  content: string | null
  status: 'completed' | 'cancelled'
  provider: string
  model: string
  prompt_tokens: number
  completion_tokens: number
  latency_ms: number
  sources: WireSource[]
  created_at: string
  position: number
}

export type ReplyFailureReason = 'provider_error' | 'timeout' | 'invalid_response' | 'quota_exceeded'

export type SessionStarted = Stored<'session.started', { title: string; owner_id: string; assistant: boolean; created_at: string }>
export type SessionRenamed = Stored<'session.renamed', { title: string }>
export type AssistantChanged = Stored<'session.assistant_changed', { assistant: boolean }>
export type MemberAdded = Stored<'member.added', { user_id: string }>
export type MemberRemoved = Stored<'member.removed', { user_id: string }>
export type SessionArchived = Stored<'session.archived', Record<string, never>>
export type SessionRead = Stored<'session.read', { position: number }>
export type MessagePosted = Stored<'message.posted', PostedData>
export type MessageEdited = Stored<'message.edited', { id: string; content: string | null; version: number; edited_at: string }>
export type MessageDeleted = Stored<'message.deleted', { id: string }>
export type ReplyCompleted = Stored<'reply.completed', ReplyCompletedData>
export type ReplyFailed = Stored<'reply.failed', { reply_id: string; reply_to: string; reason: ReplyFailureReason; detail: string | null }>
export type DocumentAttached = Stored<'document.attached', { document_id: string; by: string }>
export type DocumentDetached = Stored<'document.detached', { document_id: string; by: string }>
export type DocumentUploaded = Stored<
  'document.uploaded',
  { id: string; filename: string; media_type: string; size: number; sha256: string; created_at: string }
>
export type DocumentDeleted = Stored<'document.deleted', { id: string }>
export type ConversionPending = Stored<'conversion.pending', { id: string; document_id: string; target: string }>
export type ConversionRunning = Stored<'conversion.running', { id: string; document_id: string; target: string }>
export type ConversionCompleted = Stored<
  'conversion.completed',
  { id: string; document_id: string; target: string; size: number; pages: number | null; characters: number; duration_ms: number }
>
export type ConversionFailed = Stored<
  'conversion.failed',
  { id: string; document_id: string; target: string; reason: string; detail: string | null }
>

export type StoredFrame =
  | SessionStarted
  | SessionRenamed
  | AssistantChanged
  | MemberAdded
  | MemberRemoved
  | SessionArchived
  | SessionRead
  | MessagePosted
  | MessageEdited
  | MessageDeleted
  | ReplyCompleted
  | ReplyFailed
  | DocumentAttached
  | DocumentDetached
  | DocumentUploaded
  | DocumentDeleted
  | ConversionPending
  | ConversionRunning
  | ConversionCompleted
  | ConversionFailed

export interface ReplyStarted {
  type: 'reply.started'
  session_id: string
  reply_id: string
  reply_to: string
}
export interface ReplyDelta {
  type: 'reply.delta'
  session_id: string
  reply_id: string
  seq: number
  delta: string
}
export interface Typing {
  type: 'typing'
  session_id: string
  user_id: string
  display_name: string
}
export interface Pong {
  type: 'pong'
}
/** Sent once an erasure has been applied to every read model: reload what is shown. */
export interface UserErased {
  type: 'user.erased'
  session_id: string
  user_id: string
}

export type EphemeralFrame = ReplyStarted | ReplyDelta | Typing | Pong | UserErased
export type Frame = StoredFrame | EphemeralFrame

export function isStored(frame: Frame): frame is StoredFrame {
  return typeof (frame as { position?: unknown }).position === 'number'
}

/** Parse a text frame; anything that is not an object with a string `type` is refused (null). */
export function parseFrame(text: string): Frame | null {
  try {
    const value: unknown = JSON.parse(text)
    if (value && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string') {
      return value as Frame
    }
  } catch {
    // fall through
  }
  return null
}

/** Client → server messages. */
export type ClientMessage = { type: 'ping' } | { type: 'typing' }
