/**
 * WebSocket frames. Their shapes come from `frames.schema.d.ts`, generated from the server's
 * published JSON Schema (`web/frames.schema.json`, `npm run gen:frames`); only the reply's
 * sources are narrowed here. Stored frames carry a global `position`; ephemeral ones do not.
 */
import type * as G from './frames.schema'
import type { WireSource } from './sources'

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

export type PostedData = G.MessagePostedData

/** The generated shape, with sources narrowed to what the client reads (`./sources`). */
export interface ReplyCompletedData extends Omit<G.ReplyCompletedData, 'sources'> {
  sources: WireSource[]
}

export type ReplyFailureReason = G.ReplyFailedData['reason']

export type SessionStarted = G.FrameSessionStarted
export type SessionRenamed = G.FrameSessionRenamed
export type AssistantChanged = G.FrameSessionAssistantChanged
export type MemberAdded = G.FrameMemberAdded
export type MemberRemoved = G.FrameMemberRemoved
export type SessionArchived = G.FrameSessionArchived
export type SessionRead = G.FrameSessionRead
export type MessagePosted = G.FrameMessagePosted
export type MessageEdited = G.FrameMessageEdited
export type MessageDeleted = G.FrameMessageDeleted
export type ReplyCompleted = Omit<G.FrameReplyCompleted, 'data'> & { data: ReplyCompletedData }
export type ReplyFailed = G.FrameReplyFailed
export type DocumentAttached = G.FrameDocumentAttached
export type DocumentDetached = G.FrameDocumentDetached
export type DocumentUploaded = G.FrameDocumentUploaded
export type DocumentDeleted = G.FrameDocumentDeleted
export type ConversionPending = G.FrameConversionPending
export type ConversionRunning = G.FrameConversionRunning
export type ConversionCompleted = G.FrameConversionCompleted
export type ConversionFailed = G.FrameConversionFailed

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

export type ReplyStarted = G.ReplyStarted
export type ReplyDelta = G.ReplyDelta
export type Typing = G.Typing
export type Pong = G.Pong
export type UserErased = G.UserErased

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
