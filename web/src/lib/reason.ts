/**
 * Why something happened to a camera, for reading in the console's language.
 *
 * Two kinds of reason come from the server:
 * - a failure, "<Kind>: <detail>", where Kind names it (vigil/ingest/errors.py: Unreachable, AuthFailed, …):
 *   the kind is translated, the detail (the camera's own words, addresses) shown as it came;
 * - Vigil's own reasons (vigil/events/reasons.py), matched by their exact forms below and translated with
 *   their parts (a plan, a path, seconds) filled in. tests/events/test_reasons.py keeps this table, the
 *   server's forms and both locale files in step.
 * Anything else is shown as it came.
 */
type Translate = {
  t: (key: string, named?: Record<string, unknown>) => string
  te: (key: string) => boolean
}

/** Vigil's own reason forms -> i18n key under `reason.` (named groups become the label's parameters). */
const OWN: ReadonlyArray<readonly [RegExp, string]> = [
  [/^inside the recording plan \((?<plan>.*)\)$/, 'insidePlan'],
  [/^outside the recording plan \((?<plan>.*)\)$/, 'outsidePlan'],
  [/^recording always$/, 'recordingAlways'],
  [/^live only: this camera is never recorded$/, 'liveOnly'],
  [/^disabled by user$/, 'disabledByUser'],
  [/^enabled by user$/, 'enabledByUser'],
  [/^space available on a recording volume$/, 'spaceAgain'],
  [/^no recording volume has free space left$/, 'noVolumeRoom'],
  [/^no intact pictures for (?<seconds>[0-9.]+) s; connection kept$/, 'noIntactPictures'],
  [/^no space to start a segment on (?<volume>.*)$/, 'noSpaceToStart'],
  [/^volume full while writing: (?<error>.*)$/, 'fullWhileWriting'],
  [/^segment file (?<path>.*) on (?<volume>.*) is gone$/, 'segmentGone'],
  [/^(?<path>.*): no complete fragment; deleted$/, 'segmentDiscarded'],
  [/^(?<path>.*): cut at its last complete fragment \((?<frames>[0-9]+) frames kept\)$/, 'segmentCut'],
]

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']

/** A plan's text form (`Mon-Fri 08:00-18:00; Sat 09:00-12:00`) with the weekday names in the console's language. */
function planText(plan: string, { t, te }: Translate): string {
  return plan.replace(/\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b/g, (name) => {
    const key = `weekdayShort.${WEEKDAYS.indexOf(name) + 1}`
    return te(key) ? t(key) : name
  })
}

export function reasonText(reason: string | null | undefined, tr: Translate): string {
  if (!reason) return '—'
  const { t, te } = tr
  for (const [pattern, key] of OWN) {
    const m = pattern.exec(reason)
    if (!m || !te(`reason.${key}`)) continue
    const named: Record<string, string> = { ...(m.groups ?? {}) }
    if (named.plan !== undefined) named.plan = planText(named.plan, tr)
    return t(`reason.${key}`, named)
  }
  const m = /^([A-Za-z]+): ([\s\S]*)$/.exec(reason)
  if (!m || !te(`failure.${m[1]}`)) return reason
  return `${t(`failure.${m[1]}`)}：${m[2]}`
}
