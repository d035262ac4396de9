/**
 * Thin typed fetch client over the generated OpenAPI `paths` (schema.d.ts, `npm run gen:api`).
 *
 * Auth is the HttpOnly `vigil_session` cookie the backend sets at login, so requests are same-origin
 * with credentials and no token handling here. Failures surface the server's `detail` in an ElMessage
 * (unless `silent`) and reject with an ApiError carrying status and body.
 */
import { ElMessage } from 'element-plus'
import type { paths } from './schema'
import { i18n } from '../i18n'

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete'

/** Paths that define `method`. */
export type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends { responses: unknown } ? P : never
}[keyof paths]

type Op<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>
type JsonOf<R> = R extends { content: { 'application/json': infer J } } ? J : void
type OkOf<O> = O extends { responses: infer R }
  ? 200 extends keyof R
    ? JsonOf<R[200]>
    : 201 extends keyof R
      ? JsonOf<R[201]>
      : void
  : never
type PathParamsOf<O> = O extends { parameters: { path: infer X } } ? X : never
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? Q : never
type BodyOf<O> = O extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : O extends { requestBody?: { content: { 'application/json': infer B } } }
    ? B
    : never

/** The success body of `method path`. */
export type ResponseOf<P extends keyof paths, M extends Method> = OkOf<Op<P, M>>
/** The JSON request body of `method path`. */
export type RequestOf<P extends keyof paths, M extends Method> = BodyOf<Op<P, M>>
export type QueryParamsOf<P extends keyof paths, M extends Method> = QueryOf<Op<P, M>>

export interface CallOptions<O> {
  path?: PathParamsOf<O>
  query?: QueryOf<O>
  body?: BodyOf<O>
  /** Do not pop an error message (the caller shows its own). */
  silent?: boolean
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly body: unknown,
  ) {
    super(detail)
    this.name = 'ApiError'
  }
}

/** Called on 401 from any call except auth ones, so the app can go back to the login page. */
let onUnauthorized: (() => void) | null = null
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn
}

/** Fill `{name}` placeholders and append a query string (undefined/null/'' values are left out). */
export function buildUrl(template: string, path?: object, query?: object): string {
  let url = template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = (path as Record<string, unknown> | undefined)?.[name]
    if (value === undefined || value === null) throw new Error(`missing path parameter ${name} for ${template}`)
    return encodeURIComponent(String(value))
  })
  if (query) {
    const qs = new URLSearchParams()
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') qs.append(k, String(v))
    }
    const s = qs.toString()
    if (s) url += `?${s}`
  }
  return url
}

/** WebSocket URL for an /api path on this origin (ws: or wss: as the page). */
export function wsUrl(pathAndQuery: string): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${location.host}${pathAndQuery}`
}

/** FastAPI's own validation errors carry a list in `detail`; ours carry a string. */
export function detailOf(body: unknown, fallback: string): string {
  if (body && typeof body === 'object' && 'detail' in body) {
    const d = (body as { detail: unknown }).detail
    if (typeof d === 'string') return d
    if (Array.isArray(d)) {
      return d
        .map((e: { loc?: unknown[]; msg?: string }) =>
          e && typeof e === 'object' ? `${(e.loc ?? []).slice(1).join('.')}: ${e.msg ?? ''}` : String(e),
        )
        .join('; ')
    }
  }
  return fallback
}

export interface RawResult {
  status: number
  ok: boolean
  body: unknown
}

/** Low-level request returning status and parsed body without throwing on HTTP errors. */
export async function rawRequest(method: string, url: string, init: { json?: unknown; form?: FormData } = {}): Promise<RawResult> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: BodyInit | undefined
  if (init.json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(init.json)
  } else if (init.form) {
    body = init.form
  }
  let res: Response
  try {
    res = await fetch(url, { method: method.toUpperCase(), headers, body, credentials: 'same-origin' })
  } catch (err) {
    return { status: 0, ok: false, body: { detail: i18n.global.t('error.network') } }
  }
  let parsed: unknown = null
  const text = await res.text()
  if (text) {
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = { detail: text.slice(0, 300) }
    }
  }
  return { status: res.status, ok: res.ok, body: parsed }
}

async function call<P extends PathsWith<M>, M extends Method>(
  method: M,
  template: P,
  opts: CallOptions<Op<P, M>> = {},
): Promise<ResponseOf<P, M>> {
  const url = buildUrl(template, opts.path as object | undefined, opts.query as object | undefined)
  const r = await rawRequest(method, url, { json: opts.body })
  if (!r.ok) {
    const detail = detailOf(r.body, i18n.global.t('error.http', { status: r.status }))
    if (r.status === 401 && !template.startsWith('/api/auth/')) onUnauthorized?.()
    else if (!opts.silent) ElMessage({ type: 'error', message: detail, showClose: true, duration: 6000 })
    throw new ApiError(r.status, detail, r.body)
  }
  return r.body as ResponseOf<P, M>
}

export const api = {
  get: <P extends PathsWith<'get'>>(path: P, opts?: CallOptions<Op<P, 'get'>>) => call('get', path, opts),
  post: <P extends PathsWith<'post'>>(path: P, opts?: CallOptions<Op<P, 'post'>>) => call('post', path, opts),
  put: <P extends PathsWith<'put'>>(path: P, opts?: CallOptions<Op<P, 'put'>>) => call('put', path, opts),
  patch: <P extends PathsWith<'patch'>>(path: P, opts?: CallOptions<Op<P, 'patch'>>) => call('patch', path, opts),
  del: <P extends PathsWith<'delete'>>(path: P, opts?: CallOptions<Op<P, 'delete'>>) => call('delete', path, opts),
}
