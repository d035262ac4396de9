/** Confirmation dialogs that resolve to a boolean (Element Plus rejects on cancel; callers only need yes/no). */
import { ElMessageBox } from 'element-plus'

/** A warning-styled confirmation; with `dangerLabel` the confirm button is red and carries that label. */
export function confirmWarning(message: string, title: string, dangerLabel?: string): Promise<boolean> {
  const options = dangerLabel
    ? { type: 'warning' as const, confirmButtonText: dangerLabel, confirmButtonClass: 'el-button--danger' }
    : { type: 'warning' as const }
  return ElMessageBox.confirm(message, title, options)
    .then(() => true)
    .catch(() => false)
}
