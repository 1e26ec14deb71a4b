import { describe, expect, it } from 'vitest'
import { describeAccountError } from './accountStore'
import { NetworkError, ProblemError } from '@/api/client'

describe('describeAccountError: what a refused sign-in tells the person', () => {
  it('wrong email or password', () => {
    expect(describeAccountError(new ProblemError({ status: 401 }), 'sign-in')).toBe('Wrong email or password.')
  })
  it('disabled account', () => {
    expect(describeAccountError(new ProblemError({ status: 403 }), 'sign-in')).toBe(
      'This account is disabled. Contact an administrator.',
    )
  })
  it('rate limited, with when to retry', () => {
    expect(describeAccountError(new ProblemError({ status: 429, retryAfter: 42 }), 'sign-in')).toBe(
      'Too many attempts, try again in 42 s',
    )
  })
  it('validation errors name the field', () => {
    const error = new ProblemError({ status: 400, detail: 'Validation failed', fieldErrors: [{ field: 'password', message: 'too short' }] })
    expect(describeAccountError(error, 'sign-up')).toBe('password: too short')
  })
  it('the server cannot be reached', () => {
    expect(describeAccountError(new NetworkError(new Error('x')), 'sign-in')).toMatch(/Cannot reach the server/)
  })
})
