/**
 * Wire types, from the generated `schema.d.ts` wherever the OpenAPI document describes them;
 * the few it leaves open (pages, the audit timeline's `session` object) are written here.
 */
import type { components } from './schema'

type Schemas = components['schemas']

export type UserView = Schemas['UserView']
export type SessionView = Schemas['SessionView']
export type Member = Schemas['Member']
export type MessageView = Schemas['MessageView']
export type MessageVersion = Schemas['MessageVersion']
export type DocumentView = Schemas['DocumentView']
export type ConversionView = Schemas['ConversionView']
export type SearchHit = Schemas['SearchHit']
export type SearchResults = Schemas['SearchResults']
export type Usage = Schemas['Usage']
export type Step = Schemas['Step']
export type Timeline = Schemas['Timeline']

/** `GET /api/sessions` items (with `unread`) and `GET /api/sessions/{id}` (with `members`). */
export type SessionSummary = Schemas['SessionDetail']
export type SessionDetail = Schemas['SessionDetail']
export type ReadMarkerView = Schemas['ReadMarkerView']

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

/** Every write response carries the global position of the event it appended. */
export interface Positioned {
  position: number
}

/** `GET /api/users/lookup?email=` */
export type UserLookup = Schemas['PersonView']

export type ConversionTarget = 'text' | 'markdown' | 'html'
export type SearchKind = 'all' | 'messages' | 'documents'

/** The `session` object of an audit timeline (application/session_timeline.py `view()`). */
export interface TimelineSession {
  session_id: string
  title: string | null
  owner_id: string | null
  assistant: boolean | null
  archived: boolean
  members: { user_id: string; since: string }[]
  messages: {
    id: string
    author_id: string
    role: string
    content: string | null
    posted_at: string
    position: number
    version: number
    edited_at: string | null
    deleted: boolean
    reply_to?: string
    status?: string
  }[]
  documents: { id: string; filename?: string }[]
}
