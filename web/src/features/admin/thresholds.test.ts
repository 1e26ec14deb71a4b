import { describe, expect, it } from 'vitest'
import { levelOf } from './thresholds'

describe('dashboard thresholds', () => {
  it('response time p99 over 500 ms is a warning', () => {
    expect(levelOf('p99_ms', 500)).toBe('ok')
    expect(levelOf('p99_ms', 500.1)).toBe('warning')
    expect(levelOf('p99_ms', 120)).toBe('ok')
  })
  it('error rate over 1 % (0.01) is critical', () => {
    expect(levelOf('error_rate', 0.01)).toBe('ok')
    expect(levelOf('error_rate', 0.0101)).toBe('critical')
    expect(levelOf('error_rate', 0)).toBe('ok')
  })
  it('CPU over 80 % is a warning, memory over 90 % critical', () => {
    expect(levelOf('cpu_percent', 80)).toBe('ok')
    expect(levelOf('cpu_percent', 81)).toBe('warning')
    expect(levelOf('memory_percent', 90)).toBe('ok')
    expect(levelOf('memory_percent', 95)).toBe('critical')
  })
  it('a figure the server did not send is not flagged', () => {
    expect(levelOf('p99_ms', null)).toBe('ok')
    expect(levelOf('cpu_percent', undefined)).toBe('ok')
    expect(levelOf('memory_percent', Number.NaN)).toBe('ok')
  })
})
