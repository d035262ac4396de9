/** Nests the flat GB/T 28181 catalog tree (parent pointers) the API returns for el-tree. */
import type { GbTreeNode } from '../../api/types'

export interface GbTreeItem {
  id: string
  label: string
  kind: GbTreeNode['kind']
  status: string
  children: GbTreeItem[]
}

/** Nodes whose parent is not in the list become roots; order is kept. */
export function nestGbTree(nodes: GbTreeNode[]): GbTreeItem[] {
  const items = new Map<string, GbTreeItem>()
  for (const n of nodes) items.set(n.id, { id: n.id, label: n.name, kind: n.kind, status: n.status ?? '', children: [] })
  const roots: GbTreeItem[] = []
  for (const n of nodes) {
    const item = items.get(n.id)!
    const parent = n.parent_id ? items.get(n.parent_id) : undefined
    if (parent && parent !== item) parent.children.push(item)
    else roots.push(item)
  }
  return roots
}
