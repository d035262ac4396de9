/**
 * Regions, departments and cameras (with live status), shared by every page with a camera tree.
 * Status is polled while at least one page holds the catalogue (`acquire`/`release`), so the dots stay current.
 *
 * Every camera is loaded, page by page (the API hands out at most PAGE at a time): a city or a lower platform's
 * catalogue holds 100,000 and more, and a tree that silently stopped at the first page would hide cameras. The
 * poll waits at least POLL_MS, and at least POLL_LOAD_FACTOR times as long as the last full load took, so a
 * huge catalogue costs the node a bounded share of its time; refreshes never overlap.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '../api/client'
import type { Camera, Department, Region } from '../api/types'

const POLL_MS = 5000
const POLL_LOAD_FACTOR = 4
/** The largest page `GET /api/cameras` serves. */
const PAGE = 50_000

/** Every camera the user may see, all pages of them. */
async function fetchAllCameras(silent: boolean): Promise<Camera[]> {
  const all: Camera[] = []
  for (let offset = 0; ; offset += PAGE) {
    const page = await api.get('/api/cameras', { query: { include_removed: true, limit: PAGE, offset }, silent })
    all.push(...page)
    if (page.length < PAGE) return all
  }
}

export const useCatalog = defineStore('catalog', () => {
  const regions = ref<Region[]>([])
  const departments = ref<Department[]>([])
  const cameras = ref<Camera[]>([])
  const loaded = ref(false)
  let timer: number | null = null
  let holders = 0
  /** How long the last full camera load took (ms): the poll waits a multiple of it. */
  let lastLoadMs = 0

  const cameraById = computed(() => new Map(cameras.value.map((c) => [c.id, c])))
  const regionByCode = computed(() => new Map(regions.value.map((r) => [r.code, r])))
  const departmentById = computed(() => new Map(departments.value.map((d) => [d.id, d])))

  async function loadAll(): Promise<void> {
    const started = performance.now()
    const [r, d, c] = await Promise.all([
      api.get('/api/regions'),
      api.get('/api/departments').catch(() => [] as Department[]),
      // Removed GB channels too: alarms and recordings still name them, and their recordings stay playable.
      fetchAllCameras(false),
    ])
    lastLoadMs = performance.now() - started
    regions.value = r
    departments.value = d
    cameras.value = c
    loaded.value = true
  }

  async function refreshCameras(): Promise<void> {
    const started = performance.now()
    cameras.value = await fetchAllCameras(true)
    lastLoadMs = performance.now() - started
  }

  let refreshing = false

  function schedulePoll(): void {
    timer = window.setTimeout(() => void poll(), Math.max(POLL_MS, POLL_LOAD_FACTOR * lastLoadMs))
  }

  async function poll(): Promise<void> {
    timer = null
    refreshing = true
    try {
      await refreshCameras()
    } catch {
      /* the next poll tries again */
    } finally {
      refreshing = false
    }
    if (holders > 0 && timer === null) schedulePoll() // the next refresh only after this one ended
  }

  /** Start polling (first holder) and load if needed. */
  function acquire(): void {
    holders++
    if (!loaded.value) void loadAll().catch(() => undefined)
    if (timer === null && !refreshing) schedulePoll()
  }

  function release(): void {
    holders = Math.max(0, holders - 1)
    if (holders === 0 && timer !== null) {
      window.clearTimeout(timer)
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
