import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ProjectionsTable from './ProjectionsTable.vue'

const base = { position: 10, head: 20, lag_events: 10, lag_seconds: 2.5 }

describe('ProjectionsTable', () => {
  it('shows a rebuild’s per cent and rate, a failure’s position and error with Retry', async () => {
    const wrapper = mount(ProjectionsTable, {
      props: {
        actions: true,
        projections: [
          { name: 'search', ...base, state: 'rebuilding 42%', events_per_second: 1500 },
          { name: 'messages', ...base, state: 'failed at 1234: boom' },
          { name: 'users', ...base, lag_events: 0, state: 'live' },
        ],
      },
    })
    const rows = wrapper.findAll('tbody tr')
    expect(rows[0]!.text()).toContain('rebuilding 42 %')
    expect(rows[0]!.text()).toContain('1500.0 events/s')
    expect(rows[0]!.get('progress').attributes('value')).toBe('42')
    expect(rows[0]!.get('button').attributes('aria-disabled')).toBe('true')
    expect(rows[1]!.text()).toContain('failed at 1,234: boom')
    const retry = rows[1]!.findAll('button').find((b) => b.text() === 'Retry')!
    await retry.trigger('click')
    expect(wrapper.emitted('retry')).toEqual([['messages']])
    const rebuild = rows[2]!.findAll('button').find((b) => b.text() === 'Rebuild')!
    await rebuild.trigger('click')
    expect(wrapper.emitted('rebuild')).toEqual([['users']])
    expect(wrapper.findAll('th[scope=col]').map((th) => th.text())).toContain('Lag (events)')
  })
})
