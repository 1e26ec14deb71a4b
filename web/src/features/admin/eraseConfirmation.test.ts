import { describe, expect, it } from 'vitest'
import { erasureConfirmed } from './eraseConfirmation'

describe('erase confirmation', () => {
  it('holds only once the typed text is the person’s email', () => {
    expect(erasureConfirmed('', 'ann@example.org')).toBe(false)
    expect(erasureConfirmed('ann@example', 'ann@example.org')).toBe(false)
    expect(erasureConfirmed('bob@example.org', 'ann@example.org')).toBe(false)
    expect(erasureConfirmed('ann@example.org', 'ann@example.org')).toBe(true)
  })
  it('ignores surrounding spaces and letter case', () => {
    expect(erasureConfirmed('  Ann@Example.org ', 'ann@example.org')).toBe(true)
  })
  it('never holds for an empty email', () => {
    expect(erasureConfirmed('', '')).toBe(false)
    expect(erasureConfirmed(' ', ' ')).toBe(false)
  })
})
