/**
 * Why a camera stopped, for reading: the server writes "<Kind>: <detail>" where Kind names the failure
 * (vigil/ingest/errors.py: Unreachable, AuthFailed, …). The kind is shown in the console's language, the
 * detail (the camera's own words, addresses) as it came.
 */
type Translate = { t: (key: string) => string; te: (key: string) => boolean }

export function reasonText(reason: string | null | undefined, { t, te }: Translate): string {
  if (!reason) return '—'
  const m = /^([A-Za-z]+): ([\s\S]*)$/.exec(reason)
  if (!m || !te(`failure.${m[1]}`)) return reason
  return `${t(`failure.${m[1]}`)}：${m[2]}`
}
