/**
 * Regions, departments and cameras (with live status), shared by every page with a camera tree.
 * Status is polled while at least one page holds the catalogue (`acquire`/`release`), so the dots stay current.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '../api/client'
import type { Camera, Department, Region } from '../api/types'

const POLL_MS = 5000

export const useCatalog = defineStore('catalog', () => {
  const regions = ref<Region[]>([])
  const departments = ref<Department[]>([])
  const cameras = ref<Camera[]>([])
  const loaded = ref(false)
  let timer: number | null = null
  let holders = 0

  const cameraById = computed(() => new Map(cameras.value.map((c) => [c.id, c])))
  const regionByCode = computed(() => new Map(regions.value.map((r) => [r.code, r])))
  const departmentById = computed(() => new Map(departments.value.map((d) => [d.id, d])))

  async function loadAll(): Promise<void> {
    const [r, d, c] = await Promise.all([
      api.get('/api/regions'),
      api.get('/api/departments').catch(() => [] as Department[]),
      // Removed GB channels too: alarms and recordings still name them, and their recordings stay playable.
      api.get('/api/cameras', { query: { include_removed: true } }),
    ])
    regions.value = r
    departments.value = d
    cameras.value = c
    loaded.value = true
  }

  async function refreshCameras(): Promise<void> {
    cameras.value = await api.get('/api/cameras', { query: { include_removed: true }, silent: true })
  }

  /** Start polling (first holder) and load if needed. */
  function acquire(): void {
    holders++
    if (!loaded.value) void loadAll().catch(() => undefined)
    if (timer === null) {
      timer = window.setInterval(() => void refreshCameras().catch(() => undefined), POLL_MS)
    }
  }

  function release(): void {
    holders = Math.max(0, holders - 1)
    if (holders === 0 && timer !== null) {
      window.clearInterval(timer)
      timer = null
    }
  }

  function regionPath(code: string | null | undefined): string {
    const names: string[] = []
    let cur = code ? regionByCode.value.get(code) : undefined
    for (let guard = 0; cur && guard < 10; guard++) {
      names.unshift(cur.name)
      cur = cur.parent_code ? regionByCode.value.get(cur.parent_code) : undefined
    }
    return names.join(' / ') || code || '—'
  }

  return {
    regions,
    departments,
    cameras,
    loaded,
    cameraById,
    regionByCode,
    departmentById,
    loadAll,
    refreshCameras,
    acquire,
    release,
    regionPath,
  }
})
