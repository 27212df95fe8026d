/** The two halves of the open handshake (PROTOCOL.md §5.1), apart from the session's frame dispatch. */
import {StreamStateError, TunnelError} from './errors.js'
import {WireErrorCode} from './frame.js'
import {StreamState} from './state.js'
import type {TunnelStream} from './stream.js'

/** A stream the proxy asked the agent to open. */
export interface OpenRequest {
  readonly streamId: number
  /** The name the proxy asked for; the agent resolves it (or refuses it) from its own allow-list. */
  readonly destination: string
  /** Aborted when the proxy cancels the open or the session ends first; the reason is a TunnelError. */
  readonly signal: AbortSignal
  /** Sends ACK and returns the open stream; throws the abort reason if the open was cancelled meanwhile. */
  accept(): TunnelStream
  /** Sends RST with `code`; does nothing if the open was already answered or cancelled. */
  reject(code: WireErrorCode): void
}

/** The proxy's side of an open waiting for ACK or RST. */
export interface PendingOpen {
  accepted(stream: TunnelStream): void
  failed(error: Error): void
  /** Gives the open up on the proxy's side: RST(CANCEL) to the agent, `reason` to the caller. */
  cancel(reason: Error): void
}

/**
 * Proxy: waits for the agent's answer to the SYN just sent on `stream`. ACK resolves, RST or the end of the
 * session rejects (through `pending`), and the open timeout or the caller's signal cancel it with RST(CANCEL).
 */
export function awaitAnswer(
  stream: TunnelStream,
  pending: Map<number, PendingOpen>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TunnelStream> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cancel(
        new TunnelError('TUNNEL_ERR_OPEN_TIMEOUT', 'no answer to open', {wireCode: WireErrorCode.Cancel}),
      )
    }, timeoutMs)
    const onAbort = (): void => {
      const reason: unknown = signal?.reason
      cancel(reason instanceof Error ? reason : new Error('open aborted'))
    }
    const settle = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      pending.delete(stream.id)
    }
    const cancel = (reason: Error): void => {
      settle()
      stream.refuse(WireErrorCode.Cancel)
      reject(reason)
    }
    signal?.addEventListener('abort', onAbort, {once: true})
    pending.set(stream.id, {
      accepted: (opened) => {
        settle()
        resolve(opened)
      },
      failed: (error) => {
        settle()
        reject(error)
      },
      cancel,
    })
  })
}

export interface AnswerHooks {
  /** The application answered (either way): the request is no longer pending. */
  answered(): void
  /** The application refused the open. */
  refused(): void
}

/** Agent: the request handed to `onOpen` for a stream in SynReceived. */
export function openRequest(stream: TunnelStream, signal: AbortSignal, hooks: AnswerHooks): OpenRequest {
  const answer = (): boolean => {
    if (stream.state !== StreamState.SynReceived) return false
    hooks.answered()
    return true
  }
  return {
    streamId: stream.id,
    destination: stream.destination,
    signal,
    accept: () => {
      signal.throwIfAborted()
      if (!answer()) throw new StreamStateError(`stream ${stream.id} was already answered`)
      stream.sendAccept()
      return stream
    },
    reject: (code) => {
      if (!answer()) return
      hooks.refused()
      stream.refuse(code)
    },
  }
}
