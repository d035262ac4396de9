/** Region tree in the shape el-tree-select wants (value = region code). */
import type { Region } from '../api/types'
import { buildRegionTree, type TreeNode } from './tree'

export interface RegionOption {
  value: string
  label: string
  children: RegionOption[]
}

export function regionOptions(regions: Region[]): RegionOption[] {
  const conv = (n: TreeNode): RegionOption => ({
    value: n.region?.code ?? '',
    label: `${n.label}（${n.region?.code ?? ''}）`,
    children: n.children.filter((c) => c.kind === 'region').map(conv),
  })
  return buildRegionTree(regions, null).map(conv)
}
