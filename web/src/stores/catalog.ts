/**
 * Regions, departments and cameras (with live status), shared by every page with a camera tree.
 * Status is followed while at least one page holds the catalogue (`acquire`/`release`), so the dots stay current.
 *
 * Every camera is loaded, page by page (the API hands out at most PAGE at a time): a city or a lower platform's
 * catalogue holds 100,000 and more, and a tree that silently stopped at the first page would hide cameras. Such a
 * load takes the node seconds, so it is done once; after it, the store polls the status feed
 * (`GET /api/cameras/status`) every FEED_MS and patches the cameras that changed in place. Cameras are loaded
 * again only when the feed says some were added or renamed/moved, or answers in full with cameras this store
 * lacks (`refreshCameras`, also for an explicit refresh). The status page also shows stream figures (bitrate,
 * fps, resolution, codec, corrupt packets), which the feed leaves out: while a page holds the catalogue with
 * `figures`, they are asked for alone (`GET /api/cameras/figures`: only the cameras being pulled, a few numbers
 * each) and written in place, at least FIGURES_MS and POLL_LOAD_FACTOR times the last answer's time apart.
 * Refreshes never overlap.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '../api/client'
import type { Camera, CameraFigures, CameraStatusBrief, CameraStatusFeed, Department, Region } from '../api/types'

/** How often the status feed is asked (the server compares states at most every 2 s). */
const FEED_MS = 3000
const FIGURES_MS = 5000
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

/** Write a feed entry into a camera, touching only what differs (each write re-renders what shows it). */
function patch(camera: Camera, brief: CameraStatusBrief): void {
  if (camera.enabled !== brief.enabled) camera.enabled = brief.enabled
  if (camera.removed_us !== brief.removed_us) camera.removed_us = brief.removed_us
  const s = camera.status
  if (s.state === brief.state && s.since_us === brief.since_us && s.reason === brief.reason && s.recording === brief.recording) return
  // A new state or session: the stream figures measured before it no longer hold (the next load brings new ones).
  const figures = s.state === brief.state && s.since_us === brief.since_us
  camera.status = {
    ...s,
    state: brief.state,
    since_us: brief.since_us,
    reason: brief.reason,
    recording: brief.recording,
    ...(figures ? {} : { bitrate_bps: null, fps: null }),
  }
}

/** No figures: a camera that is not being pulled (the figures answer leaves it out). */
const NO_FIGURES: Omit<CameraFigures, 'id'> = {
  bitrate_bps: null,
  fps: null,
  width: null,
  height: null,
  codec: null,
  audio: null,
  corrupt_packets: 0,
}

/** Write a camera's stream figures, touching only what differs. */
function patchFigures(camera: Camera, f: Omit<CameraFigures, 'id'>): void {
  const s = camera.status
  if (
    s.bitrate_bps === f.bitrate_bps &&
    s.fps === f.fps &&
    s.width === f.width &&
    s.height === f.height &&
    s.codec === f.codec &&
    s.audio === f.audio &&
    s.corrupt_packets === f.corrupt_packets
  )
    return
  camera.status = {
    ...s,
    bitrate_bps: f.bitrate_bps,
    fps: f.fps,
    width: f.width,
    height: f.height,
    codec: f.codec,
    audio: f.audio,
    corrupt_packets: f.corrupt_packets,
  }
}

export const useCatalog = defineStore('catalog', () => {
  const regions = ref<Region[]>([])
  const departments = ref<Department[]>([])
  const cameras = ref<Camera[]>([])
  const loaded = ref(false)
  let timer: number | null = null
  let holders = 0
  /** Holders that show stream figures (the status page): figures are asked for too. */
  let figureHolders = 0
  /** How long the last figures answer took (ms), and when it came. */
  let lastFiguresMs = 0
  let lastFiguresAt = -Infinity // performance.now() counts from the page's load: 0 would be "just now" at first
  /** The status feed's cursor; null: the next answer is the full list. */
  let cursor: string | null = null
  let loading: Promise<void> | null = null

  const cameraById = computed(() => new Map(cameras.value.map((c) => [c.id, c])))
  const regionByCode = computed(() => new Map(regions.value.map((r) => [r.code, r])))
  const departmentById = computed(() => new Map(departments.value.map((d) => [d.id, d])))

  /** The first load (once; callers while it runs share it). */
  function loadAll(): Promise<void> {
    loading ??= (async () => {
      const [r, d, c] = await Promise.all([
        api.get('/api/regions'),
        api.get('/api/departments').catch(() => [] as Department[]),
        // Removed GB channels too: alarms and recordings still name them, and their recordings stay playable.
        fetchAllCameras(false),
      ])
      regions.value = r
      departments.value = d
      cameras.value = c
      loaded.value = true
    })().finally(() => {
      loading = null
    })
    return loading
  }

  /** Load every camera (and the regions they sit in) again. */
  async function refreshCameras(): Promise<void> {
    // What the feed tells while this loads may be older than what it loads: ask from here again afterwards.
    // The feed answers with current values, so hearing a change twice is harmless.
    const since = cursor
    const [r, c] = await Promise.all([api.get('/api/regions', { silent: true }), fetchAllCameras(true)])
    regions.value = r
    cameras.value = c
    cursor = since
  }

  /** Apply one feed answer; true if cameras must be loaded again (some are new, renamed or moved). */
  function apply(feed: CameraStatusFeed): boolean {
    const byId = cameraById.value
    let reload = feed.added.length > 0 || feed.updated.length > 0
    for (const brief of feed.cameras) {
      const camera = byId.get(brief.id)
      if (camera) patch(camera, brief)
      else reload = true
    }
    // In full, whatever is not listed is gone; otherwise only what `deleted` names.
    const listed = feed.full ? new Set(feed.cameras.map((c) => c.id)) : null
    const gone = new Set(feed.deleted)
    const drop = (c: Camera): boolean => gone.has(c.id) || (listed !== null && !listed.has(c.id))
    if (cameras.value.some(drop)) cameras.value = cameras.value.filter((c) => !drop(c))
    return reload
  }

  async function followFeed(): Promise<void> {
    const feed = await api.get('/api/cameras/status', { query: cursor ? { since: cursor } : {}, silent: true })
    const reload = apply(feed)
    cursor = feed.cursor
    if (reload) await refreshCameras()
  }

  /** Every camera's stream figures, written in place; the cameras left out have none. */
  async function refreshFigures(): Promise<void> {
    const started = performance.now()
    const figures = await api.get('/api/cameras/figures', { silent: true })
    lastFiguresMs = performance.now() - started
    lastFiguresAt = performance.now()
    const byId = new Map(figures.map((f) => [f.id, f]))
    for (const camera of cameras.value) patchFigures(camera, byId.get(camera.id) ?? NO_FIGURES)
  }

  let refreshing = false

  function schedulePoll(): void {
    timer = window.setTimeout(() => void poll(), FEED_MS)
  }

  async function poll(): Promise<void> {
    timer = null
    refreshing = true
    try {
      if (!loaded.value) await loadAll()
      else {
        await followFeed()
        const wait = Math.max(FIGURES_MS, POLL_LOAD_FACTOR * lastFiguresMs)
        if (figureHolders > 0 && performance.now() - lastFiguresAt >= wait) await refreshFigures()
      }
    } catch {
      /* the next poll tries again */
    } finally {
      refreshing = false
    }
    if (holders > 0 && timer === null) schedulePoll() // the next refresh only after this one ended
  }

  /** Start following status (first holder) and load if needed; `figures`: also keep stream figures current. */
  function acquire(options: { figures?: boolean } = {}): void {
    holders++
    if (options.figures) figureHolders++
    if (!loaded.value) void loadAll().catch(() => undefined)
    if (options.figures && loaded.value && timer !== null) {
      // A page that shows figures opened: ask now rather than at the next poll (it shows what the last full
      // load measured, which may be long ago).
      window.clearTimeout(timer)
      timer = null
      void poll()
    } else if (timer === null && !refreshing) schedulePoll()
  }

  function release(options: { figures?: boolean } = {}): void {
    holders = Math.max(0, holders - 1)
    if (options.figures) figureHolders = Math.max(0, figureHolders - 1)
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
