import { describe, expect, it } from 'vitest'
import { citationsOf } from './sources'

describe('citationsOf', () => {
  it('keeps message and document citations, drops context entries and extra keys', () => {
    const sources = [
      { kind: 'context', session_id: 's1', author_id: 'u1', content_day: '2026-12-01' },
      { kind: 'message', session_id: 's1', message_id: 'm1', author_id: 'u1', content_day: '2026-12-01' },
      { kind: 'document', document_id: 'd1', passage: 3, owner_id: 'u2' },
    ]
    expect(citationsOf(sources)).toEqual([
      { kind: 'message', session_id: 's1', message_id: 'm1' },
      { kind: 'document', document_id: 'd1', passage: 3 },
    ])
  })
  it('treats missing sources as none', () => {
    expect(citationsOf(undefined)).toEqual([])
    expect(citationsOf(null)).toEqual([])
  })
})
