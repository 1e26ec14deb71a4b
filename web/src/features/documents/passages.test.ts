import { describe, expect, it } from 'vitest'
import { passages } from './passages'

describe('passages (same cut as the backend search index)', () => {
  it('gathers short paragraphs into one passage up to the size', () => {
    expect(passages('one\n\ntwo\n\n\nthree', 20)).toEqual(['one\n\ntwo\n\nthree'])
    expect(passages('aaaaaaaaaa\n\nbbbbbbbbbb', 20)).toEqual(['aaaaaaaaaa', 'bbbbbbbbbb'])
  })

  it('cuts a long paragraph at a space past half the size, else hard at the size', () => {
    expect(passages('alpha beta gamma delta', 12)).toEqual(['alpha beta', 'gamma delta'])
    expect(passages('abcdefghijklmnopqrstuvwxyz', 10)).toEqual(['abcdefghij', 'klmnopqrst', 'uvwxyz'])
  })

  it('starts a new passage before a long paragraph', () => {
    expect(passages('short\n\n' + 'x'.repeat(25), 10)).toEqual(['short', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxx'])
  })
})
