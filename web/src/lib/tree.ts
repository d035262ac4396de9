/** Builds the region → camera tree shown in the left panel from the flat lists the API returns. */
import type { Camera, Region } from '../api/types'

export interface TreeNode {
  /** "r:<code>" for regions, "c:<id>" for cameras: unique across both kinds. */
  key: string
  label: string
  kind: 'region' | 'camera'
  region?: Region
  camera?: Camera
  children: TreeNode[]
  /** Cameras in this subtree (regions only). */
  total: number
}

/** One collator for every comparison: localeCompare builds one per call, seconds over 100,000 names. */
const byName = new Intl.Collator('zh-CN')

/**
 * Regions nest by parent_code; a region whose parent is not visible becomes a root.
 *
 * Reads no camera's status: the status feed patches statuses every few seconds, and a tree that depended on them
 * would be rebuilt (100,000 leaves sorted) each time. Leaves hold the cameras themselves, so what a row shows of
 * its camera's status follows it; `onlineCounts` gives the regions' online figures.
 */
export function buildRegionTree(regions: Region[], cameras: Camera[] | null, unassignedLabel = '—'): TreeNode[] {
  const nodes = new Map<string, TreeNode>()
  for (const r of regions) {
    nodes.set(r.code, { key: `r:${r.code}`, label: r.name, kind: 'region', region: r, children: [], total: 0 })
  }
  const roots: TreeNode[] = []
  for (const r of regions) {
    const node = nodes.get(r.code)!
    const parent = r.parent_code ? nodes.get(r.parent_code) : undefined
    if (parent) parent.children.push(node)
    else roots.push(node)
  }
  if (cameras) {
    let orphan: TreeNode | null = null
    for (const c of [...cameras].sort((a, b) => byName.compare(a.name, b.name))) {
      const leaf: TreeNode = { key: `c:${c.id}`, label: c.name, kind: 'camera', camera: c, children: [], total: 0 }
      const owner = nodes.get(c.region_code)
      if (owner) owner.children.push(leaf)
      else {
        orphan ??= { key: 'r:__none__', label: unassignedLabel, kind: 'region', children: [], total: 0 }
        orphan.children.push(leaf)
      }
    }
    if (orphan) roots.push(orphan)
  }
  const count = (n: TreeNode): void => {
    for (const ch of n.children) {
      if (ch.kind === 'camera') n.total++
      else {
        count(ch)
        n.total += ch.total
      }
    }
    // Regions first (by code), then cameras (by name), as in GB catalogues.
    n.children.sort((a, b) =>
      a.kind !== b.kind ? (a.kind === 'region' ? -1 : 1) : a.kind === 'region' ? a.key.localeCompare(b.key) : 0,
    )
  }
  roots.forEach(count)
  roots.sort((a, b) => a.key.localeCompare(b.key))
  return roots
}

/** Online cameras per region node (by key), for the "online/total" next to each region. */
export function onlineCounts(roots: TreeNode[]): Map<string, number> {
  const counts = new Map<string, number>()
  const walk = (n: TreeNode): number => {
    let online = 0
    for (const ch of n.children) {
      if (ch.kind === 'camera') online += ch.camera?.status.state === 'online' ? 1 : 0
      else online += walk(ch)
    }
    counts.set(n.key, online)
    return online
  }
  roots.forEach(walk)
  return counts
}
