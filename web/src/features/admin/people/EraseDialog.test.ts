import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import EraseDialog from './EraseDialog.vue'

const user = { id: 'u-1', email: 'ann@example.org', display_name: 'Ann', role: 'user', disabled: false }

afterEach(() => vi.unstubAllGlobals())

describe('EraseDialog', () => {
  it('keeps "Erase this person" disabled until the email is typed, then erases and follows the rebuild', async () => {
    const calls: string[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init?: RequestInit) => {
        calls.push(`${init?.method ?? 'GET'} ${url}`)
        if (String(url).endsWith('/erase')) return new Response(null, { status: 202 })
        if (String(url) === '/health') return new Response('{}', { status: 200 })
        return new Response(JSON.stringify([{ name: 'users', position: 1, head: 9, lag_events: 8, lag_seconds: 1, state: 'rebuilding 10%' }]), {
          status: 200,
          headers: { 'content-type': 'application/json' },
        })
      }),
    )
    const wrapper = mount(EraseDialog, { props: { user }, attachTo: document.body })
    const button = () => wrapper.get('button[type=submit]')
    expect(button().text()).toBe('Erase this person')
    expect(button().attributes('disabled')).toBeDefined()
    await wrapper.get('input').setValue('ann@example')
    expect(button().attributes('disabled')).toBeDefined()
    await wrapper.get('input').setValue('ann@example.org')
    expect(button().attributes('disabled')).toBeUndefined()
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(calls).toContain('POST /api/admin/users/u-1/erase')
    expect(calls).toContain('GET /api/admin/projections')
    expect(wrapper.text()).toContain('Rebuilding the read models')
    expect(wrapper.text()).toContain('rebuilding 10 %')
    wrapper.unmount()
  })
})
