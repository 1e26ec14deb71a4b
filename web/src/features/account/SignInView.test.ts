import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia } from 'pinia'
import { createMemoryHistory, createRouter } from 'vue-router'
import SignInView from './SignInView.vue'

function problem(status: number, detail: string, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify({ title: 'x', status, detail }), {
    status,
    headers: { 'content-type': 'application/problem+json', ...headers },
  })
}

async function signInWith(response: Response) {
  document.cookie = 'csrftoken=t'
  vi.stubGlobal('fetch', vi.fn(async () => response))
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/sign-in', component: SignInView },
      { path: '/sign-up', component: { template: '<p />' } },
      { path: '/', component: { template: '<p />' } },
    ],
  })
  await router.push('/sign-in')
  const wrapper = mount(SignInView, { global: { plugins: [createPinia(), router] } })
  await wrapper.find('input[type=email]').setValue('ann@example.org')
  await wrapper.find('input[type=password]').setValue('secret')
  await wrapper.find('form').trigger('submit')
  await flushPromises()
  return { wrapper, router }
}

afterEach(() => vi.unstubAllGlobals())

describe('SignInView', () => {
  it('has the fields and button a person looks for', async () => {
    const { wrapper } = await signInWith(problem(401, 'invalid email or password'))
    const labels = wrapper.findAll('label').map((l) => l.text())
    expect(labels).toEqual(['Email', 'Password'])
    expect(wrapper.find('button[type=submit]').text()).toBe('Sign in')
    expect(wrapper.find('a').text()).toBe('Sign up')
  })

  it('wrong password', async () => {
    const { wrapper } = await signInWith(problem(401, 'invalid email or password'))
    expect(wrapper.get('[role=alert]').text()).toBe('Wrong email or password.')
  })

  it('disabled account', async () => {
    const { wrapper } = await signInWith(problem(403, 'disabled'))
    expect(wrapper.get('[role=alert]').text()).toBe('This account is disabled. Contact an administrator.')
  })

  it('rate limited: says when to try again, from Retry-After', async () => {
    const { wrapper } = await signInWith(problem(429, 'slow down', { 'retry-after': '37' }))
    expect(wrapper.get('[role=alert]').text()).toBe('Too many attempts, try again in 37 s')
  })

  it('signed in: goes to the page it was sent from', async () => {
    document.cookie = 'csrftoken=t'
    const user = { id: 'u', email: 'ann@example.org', display_name: 'Ann', role: 'user', disabled: false }
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify(user), { status: 200, headers: { 'content-type': 'application/json' } })))
    const router = createRouter({
      history: createMemoryHistory(),
      routes: [{ path: '/sign-in', component: SignInView }, { path: '/sessions/:id', component: { template: '<p />' } }, { path: '/sign-up', component: { template: '<p />' } }],
    })
    await router.push('/sign-in?redirect=/sessions/abc')
    const wrapper = mount(SignInView, { global: { plugins: [createPinia(), router] } })
    await wrapper.find('input[type=email]').setValue('ann@example.org')
    await wrapper.find('input[type=password]').setValue('secret')
    await wrapper.find('form').trigger('submit')
    await flushPromises()
    expect(router.currentRoute.value.fullPath).toBe('/sessions/abc')
  })
})
