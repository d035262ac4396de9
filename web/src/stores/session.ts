/** The signed-in user (from the session cookie) and login/logout. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '../api/client'
import type { User } from '../api/types'

export const useSession = defineStore('session', () => {
  const user = ref<User | null>(null)
  /** Whether we already asked the server who we are (so the router guard asks once). */
  const checked = ref(false)

  const isAdmin = computed(() => user.value?.role === 'admin')
  /** An admin without a region scope: may manage what belongs to the whole node (upper platforms). */
  const isNodeAdmin = computed(() => isAdmin.value && !user.value?.region_code)
  /** operator and admin may play back and export; viewers only watch live. */
  const canPlayback = computed(() => user.value?.role === 'admin' || user.value?.role === 'operator')

  async function refresh(): Promise<User | null> {
    try {
      user.value = await api.get('/api/auth/me', { silent: true })
    } catch {
      user.value = null
    }
    checked.value = true
    return user.value
  }

  async function login(username: string, password: string): Promise<User> {
    const res = await api.post('/api/auth/login', { body: { username, password }, silent: true })
    user.value = res.user
    checked.value = true
    return res.user
  }

  async function logout(): Promise<void> {
    try {
      await api.post('/api/auth/logout', { silent: true })
    } finally {
      user.value = null
    }
  }

  function forget(): void {
    user.value = null
  }

  return { user, checked, isAdmin, isNodeAdmin, canPlayback, refresh, login, logout, forget }
})
