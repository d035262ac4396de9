/** `?camera=ID[&at_us=…]` on a page with a camera tree: links from other pages (alarms) open that camera. */
import { onMounted, watch } from 'vue'
import { useRoute } from 'vue-router'
import type { Camera } from '../api/types'
import { useCatalog } from '../stores/catalog'

/** Call in setup: `onCamera` runs once, when the catalogue holds the camera named in the query (never when
 * it is absent or out of the user's scope). `atUs` is the moment the link is about (e.g. an alarm), if any.
 * Not before mount, so the page's whole setup has run when `onCamera` does. */
export function useRouteCamera(onCamera: (camera: Camera, atUs: number | null) => void): void {
  const route = useRoute()
  const catalog = useCatalog()
  const id = Number(route.query.camera)
  if (!Number.isInteger(id) || id <= 0) return
  const at = Number(route.query.at_us)
  const atUs = Number.isFinite(at) && at > 0 ? at : null
  let done = false
  onMounted(() => {
    watch(
      () => catalog.cameraById.get(id),
      (camera) => {
        if (done || !camera) return
        done = true
        onCamera(camera, atUs)
      },
      { immediate: true },
    )
  })
}
