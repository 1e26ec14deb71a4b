/**
 * A reply's `sources` as the server sends them, and the citations among them. Kept apart from
 * `frames.ts` (which the first screen loads) since only the conversation needs it.
 */
import type { Source } from './frames'

/**
 * What the server may send in `sources`: citations (message, document; extra keys such as
 * `author_id`, `content_day`, `owner_id` are ignored) and entries of kind `context`, which say
 * what the assistant saw and are not citations.
 */
export type WireSource = Source | { kind: string; [key: string]: unknown }

/** The citations among a reply's sources, in their order (the numbering readers see). */
export function citationsOf(sources: readonly WireSource[] | null | undefined): Source[] {
  const out: Source[] = []
  for (const source of sources ?? []) {
    const s = source as Record<string, unknown>
    if (s['kind'] === 'message' && typeof s['session_id'] === 'string' && typeof s['message_id'] === 'string') {
      out.push({ kind: 'message', session_id: s['session_id'], message_id: s['message_id'] })
    } else if (s['kind'] === 'document' && typeof s['document_id'] === 'string' && typeof s['passage'] === 'number') {
      out.push({ kind: 'document', document_id: s['document_id'], passage: s['passage'] })
    }
  }
  return out
}
