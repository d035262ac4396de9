/**
 * Plays Vigil's fMP4-over-WebSocket stream (docs/api.md "Live" and "Recordings and playback") in a <video>
 * through Media Source Extensions. Framework-free so live cells and the playback page share it.
 *
 * Theory of operation:
 * - Each text `init` message starts a fresh MediaSource: check `MediaSource.isTypeSupported(mime)` (false for
 *   H.265 in most Chromium builds → phase "unsupported", no retry), create one SourceBuffer in `segments` mode
 *   so the fragments' own decode times place them on the media timeline. The binary init segment and the
 *   moof+mdat fragments that follow are appended in arrival order through one queue of operations, because a
 *   SourceBuffer accepts one append/remove at a time (`updating`).
 * - The first media append fixes `origin`, the media time of the init message's `start_us` (the first frame
 *   sent). Playback then seeks to origin + (seek_us − start_us) s, so wall-clock position = start_us +
 *   (currentTime − origin) s.
 * - Live keeps the edge: if buffered end − currentTime > 1.5 s, jump to just before the end. Both modes trim the
 *   buffer behind currentTime every ~10 s so memory stays bounded for hours of viewing, and skip holes.
 * - A socket that closes without `end` is reopened with exponential backoff (1 s … 10 s); playback resumes at
 *   the current wall-clock position. Backoff resets once frames flow again.
 */

export type PlayerPhase = 'connecting' | 'playing' | 'reconnecting' | 'unsupported' | 'nomse' | 'error' | 'ended'

export interface InitMessage {
  type: 'init'
  mime: string
  codec: string
  width: number
  height: number
  /** Playback only: wall-clock time (µs) of the first frame sent (keyframe at or before seek_us). */
  start_us?: number
  /** Playback only: the instant asked for. */
  seek_us?: number
  /** The audio codec sent beside the video (AAC), absent when there is none MSE can play. */
  audio?: string
}

/** Text messages from the server (binary messages carry fMP4 data). Not in OpenAPI: WebSocket protocol. */
export type ServerMessage = InitMessage | { type: 'error'; detail: string } | { type: 'end' }

export interface PlayerStatus {
  phase: PlayerPhase
  detail?: string
  codec?: string
  mime?: string
  /** Seconds until the next reconnect attempt (phase "reconnecting"). */
  retryIn?: number
  width?: number
  height?: number
}

export interface MseStreamOptions {
  /** true: stay at the live edge; false: recorded playback (no edge chasing, resumable by wall clock). */
  live: boolean
  /** WebSocket URL to open; `resumeUs` is the wall-clock instant to resume playback at after a drop. */
  urlFor: (resumeUs: number | null) => string
  onStatus: (status: PlayerStatus) => void
  /** Each init says whether the stream carries audio (its codec) or not (null). */
  onAudio?: (codec: string | null) => void
  speed?: number
}

type Op = { kind: 'append'; data: ArrayBuffer } | { kind: 'remove'; start: number; end: number }

/** Live: how far behind the newest buffered frame we tolerate before jumping. */
const LIVE_MAX_LAG_S = 1.5
const LIVE_TARGET_LAG_S = 0.3
const TRIM_EVERY_MS = 10_000
/** Keep this much already-played media (seconds) so a small rewind/gap-jump still works. */
const KEEP_BEHIND_S = { live: 4, playback: 15 }
/** A queue this long means appends cannot keep up (e.g. a frozen decoder): start over rather than grow. */
const MAX_QUEUED_OPS = 1500
const MAX_BACKOFF_S = 10

export class MseStream {
  private ws: WebSocket | null = null
  private ms: MediaSource | null = null
  private sb: SourceBuffer | null = null
  private objectUrl: string | null = null
  private ops: Op[] = []
  private stopped = false
  private endReceived = false
  private terminal = false
  private attempt = 0
  private retryTimer: number | null = null
  private tickTimer: number | null = null
  private lastTrimMs = 0
  private firstFrame = false
  private origin: number | null = null
  private startUs: number | null = null
  private pendingOffsetS: number | null = null
  private speed: number
  private status: PlayerStatus = { phase: 'connecting' }
  private readonly onEnded = (): void => this.setStatus({ phase: 'ended' })

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly opts: MseStreamOptions,
  ) {
    this.speed = opts.speed ?? 1
  }

  /** Open the socket and start the maintenance tick. */
  start(): void {
    this.video.muted = true // autoplay policy: muted video may start without a gesture
    this.video.playsInline = true
    this.video.addEventListener('ended', this.onEnded)
    this.tickTimer = window.setInterval(() => this.tick(), 500)
    this.connect(null)
  }

  /** Stop everything and release the MediaSource; the instance cannot be restarted. */
  close(): void {
    this.stopped = true
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer)
    if (this.tickTimer !== null) window.clearInterval(this.tickTimer)
    this.video.removeEventListener('ended', this.onEnded)
    this.closeSocket()
    this.resetMedia()
    this.video.removeAttribute('src')
    this.video.load()
  }

  /** Wall-clock time (µs) of the frame on screen, when the stream said where it started (playback). */
  wallclockUs(): number | null {
    if (this.startUs === null || this.origin === null) return null
    return this.startUs + (this.video.currentTime - this.origin) * 1e6
  }

  /** Change playback speed locally and ask the server to pace at it. */
  setSpeed(speed: number): void {
    this.speed = speed
    this.video.defaultPlaybackRate = speed
    this.video.playbackRate = speed
    this.send({ type: 'speed', speed })
  }

  getStatus(): PlayerStatus {
    return this.status
  }

  private send(msg: object): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg))
  }

  private setStatus(s: PlayerStatus): void {
    this.status = s
    this.opts.onStatus(s)
  }

  private connect(resumeUs: number | null): void {
    if (this.stopped) return
    this.endReceived = false
    if (this.status.phase !== 'reconnecting') this.setStatus({ phase: 'connecting' })
    let ws: WebSocket
    try {
      ws = new WebSocket(this.opts.urlFor(resumeUs))
    } catch (err) {
      this.setStatus({ phase: 'error', detail: String(err) })
      return
    }
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.onmessage = (ev: MessageEvent) => {
      if (ws !== this.ws) return // a message from a socket we already replaced
      if (typeof ev.data === 'string') this.onText(ev.data)
      else this.enqueue({ kind: 'append', data: ev.data as ArrayBuffer })
    }
    ws.onclose = () => {
      if (ws !== this.ws) return
      this.ws = null
      this.onSocketClosed()
    }
  }

  private closeSocket(): void {
    const ws = this.ws
    this.ws = null
    if (ws) {
      ws.onmessage = null
      ws.onclose = null
      ws.close()
    }
  }

  private onText(text: string): void {
    let msg: ServerMessage
    try {
      msg = JSON.parse(text) as ServerMessage
    } catch {
      return
    }
    if (msg.type === 'init') this.onInit(msg)
    else if (msg.type === 'error') this.setStatus({ phase: 'error', detail: msg.detail })
    else if (msg.type === 'end') {
      this.endReceived = true
      this.maybeEndOfStream()
    }
  }

  private onInit(msg: InitMessage): void {
    if (typeof window.MediaSource === 'undefined') {
      this.fail({ phase: 'nomse' })
      return
    }
    if (!MediaSource.isTypeSupported(msg.mime)) {
      this.fail({ phase: 'unsupported', codec: msg.codec.toUpperCase().replace('H', 'H.'), mime: msg.mime })
      return
    }
    // A (new) track: start a fresh MediaSource; data queued for the old one is meaningless now.
    this.resetMedia()
    this.opts.onAudio?.(msg.audio ?? null)
    this.startUs = msg.start_us ?? null
    this.pendingOffsetS =
      msg.seek_us !== undefined && msg.start_us !== undefined ? Math.max(0, (msg.seek_us - msg.start_us) / 1e6) : null
    const ms = new MediaSource()
    this.ms = ms
    this.objectUrl = URL.createObjectURL(ms)
    this.video.src = this.objectUrl
    ms.addEventListener(
      'sourceopen',
      () => {
        if (ms !== this.ms) return
        try {
          const sb = ms.addSourceBuffer(msg.mime)
          sb.mode = 'segments'
          sb.addEventListener('updateend', () => {
            if (sb === this.sb) this.onUpdateEnd()
          })
          this.sb = sb
        } catch (err) {
          this.fail({ phase: 'error', detail: String(err) })
          return
        }
        this.pump()
      },
      { once: true },
    )
    if (this.status.phase !== 'playing') this.setStatus({ phase: 'connecting', width: msg.width, height: msg.height })
  }

  /** A condition retrying cannot fix (codec unsupported, no MSE): stop for good and say why. */
  private fail(status: PlayerStatus): void {
    this.terminal = true
    this.setStatus(status)
    this.closeSocket()
    this.resetMedia()
  }

  private resetMedia(): void {
    this.ops = []
    this.sb = null
    const ms = this.ms
    this.ms = null
    if (ms && ms.readyState === 'open') {
      try {
        ms.endOfStream()
      } catch {
        /* already ending */
      }
    }
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl)
    this.objectUrl = null
    this.firstFrame = false
    this.origin = null
  }

  private enqueue(op: Op): void {
    if (this.terminal) return
    this.ops.push(op)
    if (this.ops.length > MAX_QUEUED_OPS) {
      // Appends are not keeping up; reconnecting starts again from a keyframe with a fresh buffer.
      this.closeSocket()
      this.resetMedia()
      this.onSocketClosed()
      return
    }
    this.pump()
  }

  private pump(): void {
    const sb = this.sb
    if (!sb || sb.updating || !this.ms || this.ms.readyState !== 'open') return
    const op = this.ops.shift()
    if (!op) return
    try {
      if (op.kind === 'append') sb.appendBuffer(op.data)
      else sb.remove(op.start, op.end)
    } catch (err) {
      if (op.kind === 'append' && err instanceof DOMException && err.name === 'QuotaExceededError') {
        // Buffer full: drop what was already played, then retry this fragment.
        const cut = this.video.currentTime - 1
        this.ops.unshift(op)
        if (sb.buffered.length && cut > sb.buffered.start(0)) {
          this.ops.unshift({ kind: 'remove', start: sb.buffered.start(0), end: cut })
          this.pump()
        }
        return
      }
      this.setStatus({ phase: 'error', detail: String(err) })
      this.closeSocket()
      this.resetMedia()
      this.onSocketClosed()
    }
  }

  private onUpdateEnd(): void {
    const buffered = this.sb?.buffered
    if (!this.firstFrame && buffered && buffered.length > 0) {
      this.firstFrame = true
      this.attempt = 0
      this.origin = buffered.start(0)
      const target = this.origin + (this.pendingOffsetS ?? 0)
      this.pendingOffsetS = null
      this.video.currentTime = target
      this.video.defaultPlaybackRate = this.speed
      this.video.playbackRate = this.speed
      void this.video.play().catch(() => undefined)
      this.setStatus({ phase: 'playing' })
    }
    this.maybeEndOfStream()
    this.pump()
  }

  private maybeEndOfStream(): void {
    if (!this.endReceived || this.ops.length || !this.ms || this.ms.readyState !== 'open') return
    if (this.sb?.updating) return
    try {
      this.ms.endOfStream()
    } catch {
      /* nothing to end */
    }
  }

  private onSocketClosed(): void {
    if (this.stopped || this.terminal) return
    if (this.endReceived) {
      this.maybeEndOfStream()
      return
    }
    const delay = Math.min(MAX_BACKOFF_S, 2 ** this.attempt)
    this.attempt++
    const detail = this.status.phase === 'error' ? this.status.detail : undefined
    this.setStatus({ phase: 'reconnecting', retryIn: delay, detail })
    const resume = this.opts.live ? null : this.wallclockUs()
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null
      this.connect(resume)
    }, delay * 1000)
  }

  /** Every 500 ms: chase the live edge, hop over holes, trim played media. */
  private tick(): void {
    const sb = this.sb
    const v = this.video
    if (!sb || !this.firstFrame || !sb.buffered.length) return
    const b = sb.buffered
    const end = b.end(b.length - 1)
    if (this.opts.live && end - v.currentTime > LIVE_MAX_LAG_S) {
      v.currentTime = Math.max(b.start(b.length - 1), end - LIVE_TARGET_LAG_S)
    }
    // Stuck before or between buffered ranges (a hole in the stream): jump to the next range.
    if (v.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
      for (let i = 0; i < b.length; i++) {
        if (v.currentTime < b.start(i)) {
          v.currentTime = b.start(i) + 0.01
          break
        }
        if (v.currentTime < b.end(i)) break
      }
    }
    if (v.paused && !v.ended && this.status.phase === 'playing') void v.play().catch(() => undefined)
    const now = Date.now()
    if (now - this.lastTrimMs > TRIM_EVERY_MS) {
      this.lastTrimMs = now
      const keep = this.opts.live ? KEEP_BEHIND_S.live : KEEP_BEHIND_S.playback
      const cut = v.currentTime - keep
      if (cut > b.start(0) + 0.5) this.enqueue({ kind: 'remove', start: b.start(0), end: cut })
    }
  }
}
