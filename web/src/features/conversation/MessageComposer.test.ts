import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import MessageComposer from './MessageComposer.vue'

describe('MessageComposer', () => {
  it('Enter sends, Shift+Enter adds a new line', async () => {
    const wrapper = mount(MessageComposer, { props: { disabled: false } })
    const textarea = wrapper.get('textarea')
    expect(wrapper.get('label').text()).toBe('Message')
    await textarea.setValue('line one')
    await textarea.trigger('keydown', { key: 'Enter', shiftKey: true })
    expect(wrapper.emitted('send')).toBeUndefined()
    await textarea.setValue('line one\nline two')
    await textarea.trigger('keydown', { key: 'Enter' })
    expect(wrapper.emitted('send')).toEqual([['line one\nline two']])
    expect((textarea.element as HTMLTextAreaElement).value).toBe('')
  })

  it('the Send button sends, and nothing is sent while archived', async () => {
    const wrapper = mount(MessageComposer, { props: { disabled: false } })
    await wrapper.get('textarea').setValue('hello')
    await wrapper.get('form').trigger('submit')
    expect(wrapper.emitted('send')).toEqual([['hello']])
    await wrapper.setProps({ disabled: true })
    await wrapper.get('textarea').setValue('again')
    await wrapper.get('form').trigger('submit')
    expect(wrapper.emitted('send')).toHaveLength(1)
    expect(wrapper.get('button').text()).toBe('Send')
  })
})
