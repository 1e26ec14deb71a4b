/** Display names the client has learned (me, lookups, typing frames), for showing authors and members. */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { useAccountStore } from '@/features/account/accountStore'
import { en } from '@/i18n/en'

export const usePeopleStore = defineStore('people', () => {
  const names = ref(new Map<string, string>())

  function learn(userId: string, displayName: string): void {
    if (names.value.get(userId) === displayName) return
    const next = new Map(names.value)
    next.set(userId, displayName)
    names.value = next
  }

  function nameOf(userId: string): string {
    const account = useAccountStore()
    if (userId === 'assistant') return en.conversation.assistantName
    if (account.me && userId === account.me.id) return en.conversation.you
    return names.value.get(userId) ?? en.conversation.someone(userId)
  }

  return { names, learn, nameOf }
})
